"""The simulation's property suite, as CI runs it.

* The correct implementation survives the state machine (CI budget).
* Each canary (a historical bug put back) is detected within a bounded budget and
  reported with the anomaly class that names it.
* Failing runs write a replay file that re-runs deterministically.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from trio._core import _run

from streamcheck.model import AnomalyKind
from streamcheck.properties._campaign import run_campaign
from streamcheck.properties._impl_coverage import measure_impl
from streamcheck.properties._replay import load_replay, replay_twice
from streamcheck.properties._simulation import Decision, Simulation
from streamcheck.properties.canaries import Canary

#: CI budget, derandomized; nightly runs raise it with STREAMCHECK_EXAMPLES and search
#: afresh with STREAMCHECK_RANDOM=1.
CORRECT_EXAMPLES = int(os.environ.get("STREAMCHECK_EXAMPLES", "1000"))
CANARY_BUDGET = 500

EXPECTED: dict[Canary, set[AnomalyKind]] = {
    # A live message missed, or (when the log repaired it) the slow path without a fault.
    Canary.SUBSCRIBER_BEFORE_ACK: {
        AnomalyKind.TERMINAL_BEFORE_CHUNKS,
        AnomalyKind.SKIPPED_WITHOUT_GAP,
        AnomalyKind.LOST,
        AnomalyKind.SLOW_PATH_WITHOUT_CAUSE,
    },
    Canary.ABORT_CHANNEL_DROPPED: {
        AnomalyKind.ABORT_NOT_HONOURED,
        AnomalyKind.TERMINAL_TWICE,
        AnomalyKind.EVENT_AFTER_TERMINAL,
        # The generator, never told, ends the turn with its own done after the abort's
        # end was acknowledged (seed 0's first failure since the forged-abort rule).
        AnomalyKind.EMIT_AFTER_END,
    },
    Canary.NO_CROSS_REPLICA_ABORT: {
        AnomalyKind.ABORT_NOT_HONOURED,
        AnomalyKind.TERMINAL_TWICE,
        AnomalyKind.EVENT_AFTER_TERMINAL,
        # The generator, never told, ends the turn with its own done after the abort's
        # end was acknowledged (seed 0's first failure since the forged-abort rule).
        AnomalyKind.EMIT_AFTER_END,
    },
    Canary.EARLY_BUFFER_ON_RESUME: {AnomalyKind.DUPLICATE},
    # Its precondition, the counter deleted on cleanup, shows first as a reused seq; the
    # stale frontier's own effect is pinned in test_canary_interleavings.py.
    Canary.STALE_FRONTIER_ACROSS_TURNS: {
        AnomalyKind.DUPLICATE,
        AnomalyKind.TERMINAL_MISSING,
        AnomalyKind.LOST,
    },
    Canary.SEQUENCED_ON_ABORT_ONLY: {AnomalyKind.BOUND_EXCEEDED},
    Canary.UNBOUNDED_EARLY_BUFFER: {AnomalyKind.BOUND_EXCEEDED},
    # Seqs reused: twice in one turn, out of order, or inside an earlier turn's range
    # (an earlier turn's event at a reused seq ends a reader as falsely superseded); or a
    # reader drops one replica's event as a duplicate of the other's seq (lost).
    # (Or a turn's seqs restarting under the last one's: a gap over seqs the log holds,
    # readers ended as superseded, and the turn's done acknowledged after that end.)
    Canary.PER_PROCESS_COUNTERS: {
        AnomalyKind.DUPLICATE,
        AnomalyKind.REORDERED,
        AnomalyKind.CROSS_GENERATION_LEAK,
        AnomalyKind.LOST,
        AnomalyKind.FALSE_SUPERSEDED,
        AnomalyKind.GAP_WITHOUT_LOSS,
        AnomalyKind.EMIT_AFTER_END,
    },
    # Skipped chunks, or (when the reader's terminal is a synthetic one) chunks lost.
    Canary.FORCE_FLUSH_SKIPS_GAP: {
        AnomalyKind.SKIPPED_WITHOUT_GAP,
        AnomalyKind.TERMINAL_BEFORE_CHUNKS,
        AnomalyKind.LOST,
    },
    # The unsynced attachment skips what it was owed before its first live event (or,
    # shrunk otherwise in a full suite's process, the log repairs it with no fault to
    # explain the slow path; see test_canary_report.py on shrinking in full suites).
    Canary.STATE_DELETED_ON_LEAVE: {
        AnomalyKind.TERMINAL_BEFORE_CHUNKS,
        AnomalyKind.SKIPPED_WITHOUT_GAP,
        AnomalyKind.LOST,
        AnomalyKind.SLOW_PATH_WITHOUT_CAUSE,
    },
    # "Stream lost" stands in for the error, over chunks that were never delivered.
    Canary.ERROR_NOT_KEPT: {AnomalyKind.LOST},
    Canary.CREATED_LOST_CROSS_REPLICA: {
        AnomalyKind.TERMINAL_BEFORE_CHUNKS,
        AnomalyKind.SKIPPED_WITHOUT_GAP,
        AnomalyKind.LOST,
        AnomalyKind.SLOW_PATH_WITHOUT_CAUSE,
    },
    # The next turn reuses seqs: allocated twice, or below the turn's own start seq.
    Canary.COUNTER_DELETED_ON_CLEANUP: {
        AnomalyKind.DUPLICATE,
        AnomalyKind.CROSS_GENERATION_LEAK,
    },
    Canary.NO_DEFERRED_DELIVERY: {AnomalyKind.DUPLICATE},
    Canary.UNAWAITED_PUBLISHES: {AnomalyKind.REORDERED, AnomalyKind.TERMINAL_BEFORE_CHUNKS},
    Canary.ABORT_SIGNALLED_BEFORE_FENCE: {AnomalyKind.TERMINAL_AFTER_STOP},
    # The reader ends "superseded" (and so never gets the turn's events it was owed);
    # where a newer turn was asked for later, only the reader's false terminal shows: the
    # generator's later emits look acknowledged after the turn's end.
    Canary.FORGED_GENERATION_SUPERSEDES: {
        AnomalyKind.FALSE_SUPERSEDED,
        AnomalyKind.LOST,
        AnomalyKind.EMIT_AFTER_END,
    },
    # The generator, stopped by a signal no abort claimed, ends the turn with its own done.
    Canary.FORGED_ABORT_OBEYED: {AnomalyKind.TERMINAL_AFTER_STOP},
}


def test_correct_implementation_survives_the_state_machine(tmp_path: Path) -> None:
    replay = tmp_path / "correct.json"
    seed = None if os.environ.get("STREAMCHECK_RANDOM") else 0
    with measure_impl() as measured:
        result = run_campaign(examples=CORRECT_EXAMPLES, seed=seed, replay_file=replay)
    assert result.crashed is None, result.crashed
    assert not result.found, f"{result.anomaly_kinds}; replay with: streamcheck replay {replay}"
    missing = result.unreached_labels
    assert not missing, f"rare paths never reached: {missing}; reached: {result.labels}"
    # ... and the impl/ code paths that matter ran (properties/_impl_coverage.py).
    failing = [v for v in measured[0].verdicts() if not v.ok]
    assert not failing, f"impl/ branch classes not reached (or stale markers): {failing}"


@pytest.mark.parametrize("canary", sorted(EXPECTED, key=str))
def test_canary_is_detected_and_named(canary: Canary, tmp_path: Path) -> None:
    replay = tmp_path / f"{canary.value}.json"
    # Derandomized so CI is repeatable; no shrinking (the `canaries` report measures it).
    result = run_campaign(
        canaries=frozenset({canary}),
        examples=CANARY_BUDGET,
        seed=0,
        replay_file=replay,
        shrink=False,
    )
    assert result.crashed is None, result.crashed
    assert result.found, f"{canary.value} not detected in {CANARY_BUDGET} examples"
    assert set(result.anomaly_kinds) & EXPECTED[canary], result.anomaly_kinds
    # The replay file re-runs without Hypothesis: twice identically, and identical to the
    # history recorded under Hypothesis, with the same verdict.
    decisions, canaries, replicas, data = load_replay(replay)
    rerun, deterministic = replay_twice(decisions, canaries=canaries, replicas=replicas)
    assert deterministic
    assert rerun.history == data["history"]
    assert not rerun.report.ok
    assert set(rerun.report.by_kind()) & EXPECTED[canary], rerun.report.by_kind()


def test_the_order_of_tasks_woken_together_is_the_tests_choice() -> None:
    """trio runs each batch of runnable tasks in an order drawn from one Random; the
    simulation seeds it before every decision with the seed the last ``shuffle_tasks``
    decision chose (0 before any), so a replay repeats the order and Hypothesis can
    vary it."""
    simulation = Simulation()
    states: list[object] = []
    try:
        simulation._call(lambda: states.append(_run._r.getstate()))
        simulation.apply(Decision("shuffle_tasks", {"seed": 5}))
        simulation._call(lambda: states.append(_run._r.getstate()))
    finally:
        simulation.close()
    assert states == [random.Random(0).getstate(), random.Random(5).getstate()]
    decisions = [
        Decision("create", {"stream": "s0", "replica": 0}),
        Decision("shuffle_tasks", {"seed": 977}),
        Decision("subscribe", {"stream": "s0", "replica": 1}),
        Decision("burst", {"stream": "s0", "n": 4}),
        Decision("pct", {"seed": 3, "depth": 2}),
    ]
    result, deterministic = replay_twice(decisions, canaries=frozenset(), replicas=2)
    assert deterministic and result.report.ok, result.report.summary()
