"""The hostile world rules (properties/_hostile.py), replayed without Hypothesis.

Each test is a short decision list: what the rules do, that the correct implementation
stays clean under them, and that the checker names what a bug they stand for does.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamcheck.model import AnomalyKind, SessionEnd
from streamcheck.properties._hostile import FORGERIES, Forgery
from streamcheck.properties._replay import replay_twice
from streamcheck.properties._simulation import Decision
from streamcheck.properties.canaries import Canary

NONE: frozenset[Canary] = frozenset()


def decisions(*steps: tuple[str, dict[str, Any]]) -> list[Decision]:
    return [Decision(name, args) for name, args in steps]


CONVERSATION: tuple[tuple[str, dict[str, Any]], ...] = (
    ("create", {"stream": "s0", "replica": 0}),
    ("settle", {}),
    ("subscribe", {"stream": "s0", "replica": 1}),
    ("settle", {}),
    ("emit", {"stream": "s0"}),
    ("settle", {}),
)


def records(result_history: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in result_history if r["type"] == kind]


def test_the_forged_generation_canary_is_named_and_the_correct_replicas_shrug() -> None:
    # The canary campaign's shrunk example (seed 0).
    steps = decisions(
        ("create", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("subscribe", {"stream": "s0", "replica": 0}),
        ("forge", {"stream": "s0", "form": "other-generation", "which": 0}),
    )
    canary = frozenset({Canary.FORGED_GENERATION_SUPERSEDES})
    bad, deterministic = replay_twice(steps, canaries=canary, replicas=2)
    assert deterministic
    # The reader's false terminal also makes the generator's later emits look
    # acknowledged after the turn's end (emit_after_end judges by what readers saw).
    assert set(bad.report.by_kind()) <= {AnomalyKind.FALSE_SUPERSEDED, AnomalyKind.EMIT_AFTER_END}
    assert AnomalyKind.FALSE_SUPERSEDED in bad.report.by_kind()
    good, _ = replay_twice(steps, canaries=NONE, replicas=2)
    assert good.report.ok, good.report.summary()


@pytest.mark.parametrize("form", FORGERIES)
@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_every_forgery_leaves_the_turn_exactly_as_emitted(form: str, which: int) -> None:
    steps = decisions(
        *CONVERSATION,
        ("forge", {"stream": "s0", "form": form, "which": which}),
        ("settle", {}),
        ("jump", {"dt": 0.6}),  # past the reorder timeout: a parked forgery is judged
        ("settle", {}),
        ("emit", {"stream": "s0"}),
        ("finish", {"stream": "s0", "error": False}),
        ("settle", {}),
    )
    result, deterministic = replay_twice(steps, canaries=NONE, replicas=2)
    assert deterministic and result.crashed is None, result.crashed
    assert result.report.ok, result.report.summary()
    delivered = [r["event"] for r in records(result.history, "Delivered")]
    assert [e["type"] for e in delivered] == ["Chunk", "Chunk", "Done"]


def test_a_forgery_swept_into_a_failovers_skip_is_not_delivered() -> None:
    # Found by the rules: after a failover the forger reads a lost counter and forges
    # seq 1,000; the producer's next publish jumps the counter past it and logs the
    # range as lost. The seq was heard live only, so it is no content.
    steps = decisions(
        ("relay_pubsub", {}),
        ("create", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("subscribe", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("finish", {"stream": "s0", "error": False}),
        ("settle", {}),
        ("jump", {"dt": 11.0}),
        ("settle", {}),
        ("create", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("subscribe", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("failover", {}),
        ("forge", {"stream": "s0", "form": Forgery.OWN_GENERATION_AHEAD.value, "which": 0}),
    )
    result, _ = replay_twice(steps, canaries=NONE, replicas=2)
    assert result.report.ok, result.report.summary()


def test_an_actor_fault_ends_that_stream_there_and_nothing_else() -> None:
    steps = decisions(
        *CONVERSATION,
        ("create", {"stream": "s1", "replica": 0}),
        ("settle", {}),
        ("subscribe", {"stream": "s1", "replica": 1}),
        ("settle", {}),
        ("actor_fault", {"replica": 1, "stream": "s0"}),
        ("settle", {}),
        ("emit", {"stream": "s0"}),
        ("emit", {"stream": "s1"}),
        ("settle", {}),
        ("subscribe", {"stream": "s0", "replica": 1}),  # a fresh actor serves it
        ("settle", {}),
        ("finish", {"stream": "s0", "error": False}),
        ("finish", {"stream": "s1", "error": False}),
        ("settle", {}),
    )
    result, deterministic = replay_twice(steps, canaries=NONE, replicas=2)
    assert deterministic and result.crashed is None, result.crashed
    assert result.report.ok, result.report.summary()
    closed = {r["session"]: r["reason"] for r in records(result.history, "SessionClosed")}
    assert closed == {
        "s1": SessionEnd.STREAM_FAILED.value,
        "s2": SessionEnd.TERMINAL.value,
        "s3": SessionEnd.TERMINAL.value,
    }


@pytest.mark.parametrize("how", ["done", "error"])
def test_a_generator_that_obeys_an_abort_at_once_is_refused(how: str) -> None:
    steps = decisions(
        *CONVERSATION,
        ("abort_reaction", {"how": how}),
        ("abort", {"stream": "s0", "replica": 1}),
        ("settle", {}),
    )
    result, deterministic = replay_twice(steps, canaries=NONE, replicas=2)
    assert deterministic and result.report.ok, result.report.summary()
    ends = [r for r in records(result.history, "Emitted") if r["kind"] != "chunk"]
    assert sorted((r["by_abort"], r["kind"], r["outcome"]) for r in ends) == [
        (False, how, "fail"),  # the generator's own terminal, refused
        (True, "done", "ok"),  # the abort's
    ]
    assert [r["event"]["type"] for r in records(result.history, "Delivered")] == [
        "Chunk",
        "Done",
    ]


def test_the_forged_abort_canary_is_named_and_the_correct_replicas_check_the_claim() -> None:
    # The canary campaign's shrunk example (seed 0): a forged abort signal for the live
    # generation; obeyed, the generator stops and ends the turn with its own done.
    steps = decisions(
        ("create", {"stream": "s0", "replica": 0}),
        ("settle", {}),
        ("forge", {"stream": "s0", "form": Forgery.ABORT.value, "which": 0}),
    )
    canary = frozenset({Canary.FORGED_ABORT_OBEYED})
    bad, deterministic = replay_twice(steps, canaries=canary, replicas=2)
    assert deterministic
    assert set(bad.report.by_kind()) == {AnomalyKind.TERMINAL_AFTER_STOP}
    good, _ = replay_twice(steps, canaries=NONE, replicas=2)
    assert good.report.ok, good.report.summary()
    assert not records(good.history, "GeneratorStopped")
