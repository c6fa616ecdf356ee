"""Each canary of docs/librechat.md bugs 1, 3, 4, 5, 7, 9, 10, 11 and 12, on its interleaving.

The campaign in test_properties.py shows the state machine finds each canary by
itself; these hand-written decision lists pin the mechanism: with the canary on the
history shows the bug's anomaly, and the correct implementation runs the very same
decisions clean (so the anomaly is the canary's, not the scenario's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from streamcheck.model import AnomalyKind
from streamcheck.properties._replay import replay_twice, seed_scheduler
from streamcheck.properties._simulation import Decision, Simulation
from streamcheck.properties.canaries import Canary

Steps = list[tuple[str, dict[str, Any]]]

SETTLE: tuple[str, dict[str, Any]] = ("settle", {})


def _turn(stream: str = "s0", producer: int = 0) -> Steps:
    return [("create", {"stream": stream, "replica": producer}), SETTLE]


SCENARIOS: dict[Canary, tuple[Steps, set[AnomalyKind]]] = {
    # Bug 3: attach, leave (the hook still resets hasSubscriber), attach, leave (no hook
    # any more), attach: the third attachment is not synchronised and skips seqs 0-1.
    Canary.STATE_DELETED_ON_LEAVE: (
        [
            *_turn(),
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("detach", {"which": 0}),
            SETTLE,
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("detach", {"which": 0}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
        ],
        {AnomalyKind.SKIPPED_WITHOUT_GAP},
    ),
    # Bug 4: a client attaches on the other replica as the turn fails; the job (and its
    # log) is deleted before the client can read it: "stream lost", chunks never seen.
    Canary.ERROR_NOT_KEPT: (
        [
            *_turn(),
            ("burst", {"stream": "s0", "n": 2}),
            SETTLE,
            ("subscribe", {"stream": "s0", "replica": 1}),
            ("finish", {"stream": "s0", "error": True}),
            SETTLE,
        ],
        {AnomalyKind.LOST},
    ),
    # Bug 7: the first event is published before the other replica's SUBSCRIBE; that
    # replica has no local buffer, and without the log catch-up it skips it.
    Canary.CREATED_LOST_CROSS_REPLICA: (
        [
            *_turn(),
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
        ],
        {AnomalyKind.SKIPPED_WITHOUT_GAP},
    ),
    # Bug 10: the turn ends, a cleanup pass deletes the counter, the next turn on the
    # same stream id starts again at seq 0.
    Canary.COUNTER_DELETED_ON_CLEANUP: (
        [
            *_turn(),
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("finish", {"stream": "s0", "error": False}),
            SETTLE,
            ("jump", {"dt": 11.0}),
            SETTLE,
            *_turn(producer=1),
            ("emit", {"stream": "s0"}),
            SETTLE,
        ],
        {AnomalyKind.DUPLICATE},
    ),
    # Bug 11: a client attaches on the producer's replica while an early publish is in
    # flight; its pub/sub copy lands while the attachment waits, then the buffer replays.
    Canary.NO_DEFERRED_DELIVERY: (
        [
            *_turn(),
            ("subscribe", {"stream": "s0", "replica": 0}),  # its job read waits
            ("emit", {"stream": "s0"}),
            ("step", {"k": 1}),  # the publish (NOSCRIPT: EVAL follows)
            ("step", {"k": 0}),  # the job read: the attachment goes live, reads the counter
            ("step", {"k": 0}),  # the publish runs; its copy and the counter read wait
            ("deliver", {"k": 0}),  # the copy lands live; then the buffer replays it
            SETTLE,
        ],
        {AnomalyKind.DUPLICATE},
    ),
    # Bug 5: Stop pressed on replica 1 while the generator runs on replica 0: the abort
    # ends the turn for readers, but replica 0 never hears of it and keeps generating.
    Canary.NO_CROSS_REPLICA_ABORT: (
        [
            *_turn(),
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("abort", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("finish", {"stream": "s0", "error": False}),
            SETTLE,
        ],
        {AnomalyKind.ABORT_NOT_HONOURED, AnomalyKind.TERMINAL_TWICE},
    ),
    # Bug 12: the reader on the producer's replica leaves; the replica keeps the channel
    # for its abort listener, its frontier back at 0, and the next event parks there.
    Canary.SEQUENCED_ON_ABORT_ONLY: (
        [
            *_turn(),
            ("subscribe", {"stream": "s0", "replica": 0}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
            ("detach", {"which": 0}),
            SETTLE,
            ("emit", {"stream": "s0"}),
            SETTLE,
        ],
        {AnomalyKind.BOUND_EXCEEDED},
    ),
    # Bug 1: the generator's loop makes three chunks without awaiting their publishes;
    # Redis runs the second first (step 1 of the pending scripts), so the second chunk
    # gets the lower seq and every reader sees it first.
    Canary.UNAWAITED_PUBLISHES: (
        [
            *_turn(),
            ("subscribe", {"stream": "s0", "replica": 1}),
            SETTLE,
            ("generate", {"stream": "s0", "n": 3}),
            ("step", {"k": 1}),
            SETTLE,
        ],
        {AnomalyKind.REORDERED},
    ),
}


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # impl logs every simulated reconnect and every lost stream.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _kinds(steps: Steps, canaries: frozenset[Canary]) -> set[AnomalyKind]:
    decisions = [Decision(name, dict(args)) for name, args in steps]
    result, deterministic = replay_twice(decisions, canaries=canaries, replicas=2)
    assert deterministic
    return set(result.report.by_kind())


@pytest.mark.parametrize("canary", sorted(SCENARIOS, key=str))
def test_the_canary_shows_its_anomaly_on_the_section_5_interleaving(canary: Canary) -> None:
    steps, expected = SCENARIOS[canary]
    assert _kinds(steps, frozenset({canary})) & expected


@pytest.mark.parametrize("canary", sorted(SCENARIOS, key=str))
def test_the_correct_implementation_runs_the_same_interleaving_clean(canary: Canary) -> None:
    steps, _ = SCENARIOS[canary]
    assert _kinds(steps, frozenset()) == set()


# Bug 9 needs the counter to go back first (#10's mechanism, which its canary turns on
# too), and that shows as a reused seq before anything else. What the stale frontier
# adds is pinned here: the same turns, healed, leave the next turn's reader hanging
# with #9, and not with #10 alone.
STALE_FRONTIER_TURNS: Steps = [
    *_turn(),
    ("subscribe", {"stream": "s0", "replica": 1}),
    SETTLE,
    ("emit", {"stream": "s0"}),
    SETTLE,
    ("emit", {"stream": "s0"}),
    SETTLE,
    ("finish", {"stream": "s0", "error": False}),
    SETTLE,
    ("jump", {"dt": 11.0}),  # past the cleanup interval: the counter is deleted
    SETTLE,
    *_turn(),
    ("subscribe", {"stream": "s0", "replica": 1}),
    SETTLE,
    ("emit", {"stream": "s0"}),
    SETTLE,
    ("finish", {"stream": "s0", "error": False}),
    SETTLE,
]


def _healed_kinds(steps: Steps, canaries: frozenset[Canary]) -> set[AnomalyKind]:
    seed_scheduler()
    simulation = Simulation(replicas=2, canaries=canaries)
    try:
        for name, args in steps:
            simulation.apply(Decision(name, dict(args)))
        return set(simulation.heal().by_kind())
    finally:
        simulation.close()


def test_a_stale_frontier_leaves_the_next_turns_reader_hanging() -> None:
    stale = _healed_kinds(STALE_FRONTIER_TURNS, frozenset({Canary.STALE_FRONTIER_ACROSS_TURNS}))
    deleted = _healed_kinds(STALE_FRONTIER_TURNS, frozenset({Canary.COUNTER_DELETED_ON_CLEANUP}))
    assert AnomalyKind.TERMINAL_MISSING in stale
    assert AnomalyKind.TERMINAL_MISSING not in deleted
    # Reused seqs also let a reader take an old turn's terminal as this turn's end,
    # after which the generator's emits look acknowledged past the end.
    assert AnomalyKind.DUPLICATE in deleted
    assert deleted <= {AnomalyKind.DUPLICATE, AnomalyKind.EMIT_AFTER_END}
    assert _healed_kinds(STALE_FRONTIER_TURNS, frozenset()) == set()


def test_an_abort_whose_publish_was_not_awaited_can_be_judged() -> None:
    # With unawaited publishes the aborting replica's Done is dispatched, its seq
    # unknown: the world records it as maybe published, since an acknowledged emit
    # without a seq would leave the history unjudgeable.
    steps: Steps = [
        *_turn(),
        ("subscribe", {"stream": "s0", "replica": 0}),
        SETTLE,
        ("abort", {"stream": "s0", "replica": 0}),
        SETTLE,
    ]
    decisions = [Decision(name, dict(args)) for name, args in steps]
    canaries = frozenset({Canary.UNAWAITED_PUBLISHES})
    result, deterministic = replay_twice(decisions, canaries=canaries, replicas=2)
    assert deterministic
    assert result.report.unknown_reason is None
