"""Minimizing a failing decision list: chunk deletion, the deadline, and a real
replay file shortened in place and still reproducing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streamcheck.impl import GenerationJobManager
from streamcheck.model import AnomalyKind
from streamcheck.properties._minimize import minimize_decisions, minimize_replay_file, shows_anomaly
from streamcheck.properties._replay import (
    crash_signature,
    load_replay,
    replay_simulation,
    replay_twice,
    run_decisions,
    write_crash_replay_file,
    write_replay_file,
)
from streamcheck.properties._simulation import Decision, SimulationCrashed
from streamcheck.properties.canaries import Canary
from streamcheck.properties.sim.resp import DEFAULT_REPRODUCTION, ReproductionRule

FAR = 3600.0


def _names(decisions: list[Decision]) -> list[str]:
    return [d.name for d in decisions]


def _needs_a_then_b_and_even_xs(decisions: list[Decision]) -> bool:
    names = _names(decisions)
    return (
        "a" in names
        and "b" in names
        and names.index("a") < names.index("b")
        and names.count("x") % 2 == 0
    )


def test_decisions_that_only_matter_in_pairs_are_deleted_in_pairs() -> None:
    decisions = [Decision(n) for n in ["x", "x", "x", "x", "a", "y", "x", "x", "b", "y"]]
    assert _needs_a_then_b_and_even_xs(decisions)
    result = minimize_decisions(
        decisions, _needs_a_then_b_and_even_xs, deadline=time.monotonic() + FAR
    )
    assert _names(result.decisions) == ["a", "b"]
    assert not result.out_of_time and result.replays > 0


def test_a_list_that_needs_everything_is_left_whole() -> None:
    decisions = [Decision("a"), Decision("b")]
    result = minimize_decisions(
        decisions, _needs_a_then_b_and_even_xs, deadline=time.monotonic() + FAR
    )
    assert _names(result.decisions) == ["a", "b"]


def test_the_deadline_returns_the_best_list_so_far() -> None:
    decisions = [Decision(n) for n in ["x", "x", "a", "b"]]
    result = minimize_decisions(decisions, _needs_a_then_b_and_even_xs, deadline=0.0)
    assert result.out_of_time and result.decisions == decisions and result.replays == 0


#: The canary `created-lost-cross-replica` as Hypothesis once left it: two failovers
#: (which cancel out: the reconnect back-offs they leave behind differ after one) and a
#: settle the failure does not need, before the four decisions it does.
PADDED: list[tuple[str, dict[str, object]]] = [
    ("failover", {}),
    ("failover", {}),
    ("create", {"replica": 0, "stream": "s0"}),
    ("settle", {}),
    ("emit", {"stream": "s0"}),
    ("settle", {}),
    ("subscribe", {"replica": 1, "stream": "s0"}),
]


def test_a_replay_file_is_shortened_in_place_and_still_reproduces(tmp_path: Path) -> None:
    canaries = frozenset({Canary.CREATED_LOST_CROSS_REPLICA})
    decisions = [Decision(name, dict(args)) for name, args in PADDED]
    with run_decisions(decisions, canaries=canaries, replicas=2) as (simulation, report):
        assert [a.kind for a in report.anomalies][:1] == [AnomalyKind.TERMINAL_BEFORE_CHUNKS]
        path = write_replay_file(
            tmp_path / "run.json",
            name="padded",
            simulation=simulation,
            report=report,
            extra={"rule_steps": 6},
        )

    minimized = minimize_replay_file(path)

    assert minimized is not None
    assert (minimized.before, minimized.after) == (len(PADDED), 4)
    shorter, _, replicas, data = load_replay(path)
    assert _names(shorter) == ["create", "settle", "emit", "subscribe"]
    assert data["rule_steps"] == 6
    assert data["minimized"]["from_decisions"] == len(PADDED)
    assert data["minimized"]["kept_anomaly"] == "terminal_before_chunks"
    rerun, deterministic = replay_twice(shorter, canaries=canaries, replicas=replicas)
    assert deterministic and rerun.history == data["history"]
    assert shows_anomaly(AnomalyKind.TERMINAL_BEFORE_CHUNKS, canaries=canaries, replicas=2)(shorter)


def test_a_file_without_anomalies_is_left_alone(tmp_path: Path) -> None:
    decisions = [Decision("create", {"replica": 0, "stream": "s0"}), Decision("settle")]
    with run_decisions(decisions, canaries=frozenset(), replicas=2) as (simulation, report):
        assert report.ok
        path = write_replay_file(
            tmp_path / "ok.json", name="ok", simulation=simulation, report=report
        )
    before = path.read_text()
    assert minimize_replay_file(path) is None
    assert path.read_text() == before
    assert "minimized" not in json.loads(before)


# A world crashed on purpose is abandoned mid-run: its trio tasks are finalized by the
# garbage collector. Collect them here, where they were made, so their finalizers' noise
# lands in this test (ignored) and not in whichever test runs when the collector does.
@pytest.mark.usefixtures("collect_crashed_worlds")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_crash_replay_file_is_shortened_and_still_crashes_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Emits crash the world (an injected bug); everything before the emit but the
    # turn it needs is noise the minimizer deletes.
    async def broken_emit(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected crash")

    monkeypatch.setattr(GenerationJobManager, "emit_chunk", broken_emit)
    decisions = [
        Decision("create", {"stream": "s1", "replica": 1}),
        Decision("jump", {"dt": 2.5}),
        Decision("create", {"stream": "s0", "replica": 0}),
        Decision("settle"),
        Decision("subscribe", {"stream": "s0", "replica": 1}),
        Decision("settle"),
        Decision("emit", {"stream": "s0"}),
    ]
    path = tmp_path / "crash.json"
    with replay_simulation(canaries=frozenset(), replicas=2) as simulation:
        with pytest.raises(SimulationCrashed) as crash:
            for decision in decisions:
                simulation.apply(decision)
        write_crash_replay_file(path, name="test", simulation=simulation, crash=crash.value)
    minimized = minimize_replay_file(path)
    assert minimized is not None and minimized.after < minimized.before == 7
    shorter, _, _, data = load_replay(path)
    assert _names(shorter)[-1] == "emit" and "subscribe" not in _names(shorter)
    assert data["minimized"]["kept_anomaly"] == "crash"
    replayed, deterministic = replay_twice(shorter, canaries=frozenset(), replicas=2)
    assert deterministic and replayed.crashed is not None
    assert crash_signature(replayed.crashed) == crash_signature(data["crashed"])


@pytest.mark.parametrize(
    ("outcomes", "kept", "runs"),
    [
        ([True, True], True, 2),  # decided after two: the third replay is not made
        ([True, False, True], True, 3),
        ([False, True, True], True, 3),
        ([True, False, False], False, 3),
        ([False, False], False, 2),  # one replay left cannot make two of three
    ],
)
def test_a_foreign_candidate_is_kept_only_when_two_of_three_replays_show_it(
    outcomes: list[bool], kept: bool, runs: int
) -> None:
    # Foreign agents' timing is not the harness's: one replay that shows the anomaly
    # kept races the decisions do not hold, and the list shrank to one that seldom fails.
    replays = iter(outcomes)
    made: list[bool] = []

    def replay_shows() -> bool:
        made.append(next(replays))
        return made[-1]

    assert DEFAULT_REPRODUCTION.holds(replay_shows) is kept
    assert len(made) == runs


def test_a_reproduction_rule_needs_k_between_one_and_n() -> None:
    assert str(ReproductionRule(3, 5)) == "3 of 5"
    for needed, runs in ((0, 3), (4, 3)):
        with pytest.raises(ValueError, match="1 <= K <= N"):
            ReproductionRule(needed, runs)


def test_a_flaky_failure_minimizes_to_what_reproduces_by_the_rule() -> None:
    # "a" fails on its own one replay in three (a race); "a" and "b" together always do.
    # One showing replay would keep ["a"]; the rule keeps both.
    rolls = iter(range(10_000))

    def replay_shows(decisions: list[Decision]) -> bool:
        names = _names(decisions)
        if "a" in names and "b" in names:
            return True
        return "a" in names and next(rolls) % 3 == 0

    def still_fails(decisions: list[Decision]) -> bool:
        return DEFAULT_REPRODUCTION.holds(lambda: replay_shows(decisions))

    found = [Decision(n, {}) for n in ["x", "a", "y", "b", "z"]]
    shorter = minimize_decisions(found, still_fails, deadline=time.monotonic() + FAR)
    assert _names(shorter.decisions) == ["a", "b"]
