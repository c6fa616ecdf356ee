"""An abort signal on the channel is obeyed only once an abort has claimed the turn
(issue 17: the channel is untrusted, an abort always wins).

A foreign client publishes an abort signal for the live generation, which ``abort_job``
never claimed: the generator keeps going and completes normally, and the signal is
dropped and counted. A real abort pressed on another replica still stops the generator.
A check that Redis does not answer is asked again until it is answered. Stream ids are
unique per test: channels carry no key prefix on the shared server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import ClassVar

import pytest
import trio

from streamcheck.impl import (
    AbortOutcome,
    GenerationJob,
    GenerationJobManager,
    JobStatus,
    Keys,
    ReplicaParts,
    StopReason,
)
from streamcheck.impl.redis import RedisConnectionError
from streamcheck.impl.transport._actor import StreamActor
from streamcheck.impl.transport._envelope import encode_abort
from streamcheck.model import Done
from streamcheck.properties.canaries import Canary, replica_build
from tests.backends import NEEDS_GLIDE, collect, delta, replicas, texts
from tests.redis_support import open_redis

KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis-glide", id="redis-glide", marks=[pytest.mark.redis, NEEDS_GLIDE]),
]
#: Bounds every wait for a replica to handle a signal (it takes milliseconds).
HANDLED_WITHIN_S = 5.0


def _backend(
    kind: str, request: pytest.FixtureRequest, count: int, parts: list[ReplicaParts] | None = None
) -> AbstractAsyncContextManager[list[GenerationJobManager]]:
    url = request.getfixturevalue("redis_url") if kind != "memory" else ""
    prefix = request.getfixturevalue("key_prefix") if kind != "memory" else ""
    return replicas(kind, count, url=url, prefix=prefix, parts=parts)


Forge = Callable[[str, str], Awaitable[None]]


@asynccontextmanager
async def _forger(
    kind: str, request: pytest.FixtureRequest, bystander: GenerationJobManager
) -> AsyncIterator[Forge]:
    """What publishes an abort signal nobody claimed, given a stream and a generation:
    on Redis a client of no replica; in memory a replica's bus, asked to signal without
    claiming first."""
    if kind == "memory":
        yield bystander.transport.bus.publish_abort
        return
    async with open_redis(request.getfixturevalue("redis_url")) as foreign:

        async def forge(stream: str, generation: str) -> None:
            await foreign.publish(Keys.channel(stream), encode_abort(generation))

        yield forge


class _Settles(StreamActor):
    """impl's actor (or a canary's, in front of it), telling a test when it has obeyed
    or dropped a stream's abort signal (a check left to ask again settles nothing)."""

    settled: ClassVar[dict[str, trio.Event]] = {}

    async def _obey_abort(self, generation: str) -> None:
        await super()._obey_abort(generation)
        if generation not in self._abort_checks:
            _settled(self.stream_id).set()


def _settled(stream: str) -> trio.Event:
    """Set once a replica obeyed or dropped an abort signal of ``stream`` (stream ids
    are unique per test)."""
    return _Settles.settled.setdefault(stream, trio.Event())


def _settling(actor: type[StreamActor]) -> ReplicaParts:
    return ReplicaParts(actor=type(f"Settles{actor.__name__}", (_Settles, actor), {}))


async def _within(what: str, event: trio.Event) -> None:
    """Wait for ``event`` (a replica handles a signal within milliseconds), failing
    with ``what`` never happened."""
    with trio.move_on_after(HANDLED_WITHIN_S):
        await event.wait()
        return
    pytest.fail(f"within {HANDLED_WITHIN_S} s: {what}")


def _dropped(manager: GenerationJobManager) -> int:
    return manager.transport.statistics().delivery.unconfirmed_aborts


async def _forged_abort_run(
    kind: str, request: pytest.FixtureRequest, generator_actor: type[StreamActor]
) -> tuple[GenerationJob, list[object], int, JobStatus | None]:
    """Generator on A, reader on B; a forged abort signal for the live generation
    arrives mid-turn. Returns the generator's job, what B's reader got, how many
    signals A dropped, and the job's final status."""
    stream = f"forged-abort-{uuid.uuid4().hex}"
    parts = [_settling(generator_actor), ReplicaParts()]
    async with _backend(kind, request, 2, parts) as (a, b), _forger(kind, request, b) as forge:
        job = await a.create_job(stream, "u1")
        sub = await b.subscribe(stream, "u1")
        await a.emit_chunk(stream, delta("one "))
        await forge(stream, job.generation)
        await _within("the generator's replica neither obeyed nor dropped it", _settled(stream))
        if not job.is_aborted:
            await a.emit_chunk(stream, delta("two"))
            await a.emit_done(stream, {"final": True})
        else:  # as generators do when told to stop
            await a.emit_done(stream, {"final": "stopped"})
        await a.complete_job(stream)
        events = await collect(sub)
        stored = await b.get_job(stream)
        return job, list(events), _dropped(a), stored.status if stored else None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_forged_abort_signal_leaves_the_generator_running(
    kind: str, request: pytest.FixtureRequest
) -> None:
    job, events, dropped, status = await _forged_abort_run(kind, request, StreamActor)
    assert not job.is_aborted and job.stop_reason is None
    assert dropped == 1
    assert texts(events) == ["one ", "two"]  # type: ignore[arg-type]
    assert isinstance(events[-1], Done) and events[-1].data == {"final": True}
    assert status is JobStatus.COMPLETE


@pytest.mark.parametrize("kind", KINDS[:2])
async def test_obeying_without_the_check_lets_a_forgery_end_the_turn(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # The canary restores the old actor; this is what the test above guards against.
    canary = replica_build(frozenset({Canary.FORGED_ABORT_OBEYED})).parts.actor
    job, events, dropped, _ = await _forged_abort_run(kind, request, canary)
    assert job.stop_reason is StopReason.ABORTED and dropped == 0
    assert isinstance(events[-1], Done) and events[-1].data == {"final": "stopped"}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_real_abort_still_stops_the_generator_on_another_replica(
    kind: str, request: pytest.FixtureRequest
) -> None:
    stream = f"real-abort-{uuid.uuid4().hex}"
    async with _backend(kind, request, 3) as (a, b, c):
        job = await a.create_job(stream, "u1")
        sub = await b.subscribe(stream, "u1")
        await a.emit_chunk(stream, delta("partial"))
        result = await c.abort_job(stream, "u1")
        assert result.outcome is AbortOutcome.ABORTED
        await _within("the generator on A was never told to stop", job.aborted)
        assert job.stop_reason is StopReason.ABORTED
        events = await collect(sub)
        assert isinstance(events[-1], Done) and isinstance(events[-1].data, dict)
        assert events[-1].data["aborted"] is True
        assert sum(_dropped(m) for m in (a, b, c)) == 0


class _UnreachableForAWhile(_Settles):
    """Redis does not answer the first two claim checks."""

    failures_left = 2

    async def _abort_confirmed(self, generation: str) -> bool:
        if _UnreachableForAWhile.failures_left > 0:
            _UnreachableForAWhile.failures_left -= 1
            raise RedisConnectionError("injected: the check's reply was lost")
        return await super()._abort_confirmed(generation)


@pytest.mark.parametrize("forged", [False, True], ids=["real", "forged"])
async def test_an_unanswered_check_is_asked_again_until_redis_answers(forged: bool) -> None:
    _UnreachableForAWhile.failures_left = 2
    stream = f"flaky-check-{uuid.uuid4().hex}"
    parts = [ReplicaParts(actor=_UnreachableForAWhile), ReplicaParts(), ReplicaParts()]
    async with replicas("memory", 3, parts=parts) as (a, b, c):
        job = await a.create_job(stream, "u1")
        await a.emit_chunk(stream, delta("partial"))
        if forged:
            await b.transport.bus.publish_abort(stream, job.generation)
            await _within("the forged signal was never dropped", _settled(stream))
            assert not job.is_aborted and _dropped(a) == 1
        else:
            result = await c.abort_job(stream, "u1")
            assert result.outcome is AbortOutcome.ABORTED
            await _within("the real abort was lost with its check", job.aborted)
            assert _dropped(a) == 0
        assert _UnreachableForAWhile.failures_left == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_the_claim_is_what_the_bus_reports(kind: str, request: pytest.FixtureRequest) -> None:
    stream = f"claim-{uuid.uuid4().hex}"
    async with _backend(kind, request, 1) as (a,):
        bus = a.transport.bus
        assert not await bus.abort_claimed(stream, "nobody")  # no job
        job = await a.create_job(stream, "u1")
        assert not await bus.abort_claimed(stream, job.generation)
        assert await bus.claim_abort(stream, job.generation) is None
        assert await bus.abort_claimed(stream, job.generation)
        assert not await bus.abort_claimed(stream, "another-generation")
        newer = await a.create_job(stream, "u1")  # a new turn replaces the job: no claim
        assert not await bus.abort_claimed(stream, newer.generation)
        assert not await bus.abort_claimed(stream, job.generation)
