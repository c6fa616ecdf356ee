"""The demo shows what the README says: a client drops from one replica and resumes on another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from streamcheck.impl import GenerationJobManager
from streamcheck.properties.cli import EXIT_OK, main
from streamcheck.properties.demo import run_demo


def _record_calls(
    monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, GenerationJobManager]]
) -> None:
    """Record which replica (manager) each create, subscribe and resume runs on."""
    for name in ("create_job", "subscribe", "resume"):
        original: Callable[..., Any] = getattr(GenerationJobManager, name)

        def spy(
            self: GenerationJobManager,
            *args: Any,
            _name: str = name,
            _original: Callable[..., Any] = original,
            **kwargs: Any,
        ) -> Any:
            calls.append((_name, self))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(GenerationJobManager, name, spy)


async def _check_demo(monkeypatch: pytest.MonkeyPatch, backend: str, redis_url: str = "") -> None:
    calls: list[tuple[str, GenerationJobManager]] = []
    _record_calls(monkeypatch, calls)
    with trio.fail_after(30):
        result = await run_demo(backend=backend, redis_url=redis_url, echo=False)
    assert result.ok, (result.answer, result.expected)
    assert [name for name, _ in calls] == ["create_job", "subscribe", "resume"]
    (_, generator), (_, attached), (_, resumed) = calls
    # Three different replicas: the client neither attaches where the generator runs
    # nor resumes on the replica it dropped from.
    assert len({id(generator), id(attached), id(resumed)}) == 3
    assert result.snapshot_seq is not None and result.snapshot_seq > 0


async def test_the_client_resumes_on_another_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    await _check_demo(monkeypatch, "memory")


async def test_the_client_resumes_on_another_replica_over_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    await _check_demo(monkeypatch, "redis", redis_url)


def test_streamcheck_demo_says_where_the_client_attached_dropped_and_resumed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "generator on replica A" in out
    assert "client attached to replica B" in out
    assert "client dropped from replica B" in out
    assert "client resumed on replica C" in out
    assert "OK: nothing lost, nothing duplicated" in out
