"""Shorten a failing decision list further than Hypothesis can: delete what the
failure does not need, checking each deletion with a deterministic replay.

Hypothesis shrinks the rules it drew, one deletion at a time and by doubling runs of
deletions that each keep the failure. Some decisions only matter in pairs: two
failovers in a row leave the world (its reconnect back-offs) as no failover does,
one does not. A run of such decisions cannot be deleted one at a time, so doubling
never starts and the run stays in the shrunk trace. Here chunks are deleted from the
decision list itself (halves, quarters, ... and every size up to four, largest first,
at every position, until no deletion is left that keeps the failure): a deletion is
kept when a replay of the rest still shows the class of the failure's first anomaly.
Replays are pure functions of the decision list, so what comes out reproduces.

Example::

    shorter = minimize_decisions(decisions, still_fails, deadline=time.monotonic() + 30)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamcheck.model import AnomalyKind, CheckReport
from streamcheck.properties._replay import (
    apply_and_judge,
    crash_signature,
    load_replay,
    replay_decisions,
    replay_simulation,
    write_crash_replay_file,
    write_replay_file,
)
from streamcheck.properties._replay_schema import replay_backend
from streamcheck.properties._run_limits import SimBackend
from streamcheck.properties._simulation import Decision, SimulationCrashed
from streamcheck.properties.canaries import Canary

#: Wall seconds one failure's minimization may take (replays cost 5 to 50 ms each).
MINIMIZE_SECONDS = 30.0

#: Every chunk size up to this one is tried, not only halves.
SMALL_CHUNKS = 4

StillFails = Callable[[list[Decision]], bool]


@dataclass(frozen=True, slots=True)
class Minimized:
    decisions: list[Decision]
    #: Replays made; each either kept a deletion or was rolled back.
    replays: int
    #: The deadline stopped the search before no deletion was left to try.
    out_of_time: bool


def minimize_decisions(
    decisions: Sequence[Decision], still_fails: StillFails, *, deadline: float
) -> Minimized:
    """The shortest list found by deleting chunks of ``decisions`` while
    ``still_fails`` holds (it must hold for ``decisions`` itself). Stops at the
    ``deadline`` (``time.monotonic()``) with the best list so far."""
    current = list(decisions)
    replays = 0
    while True:
        progress = False
        for size in _chunk_sizes(len(current)):
            start = 0
            while start + size <= len(current):
                if time.monotonic() >= deadline:
                    return Minimized(current, replays, out_of_time=True)
                candidate = current[:start] + current[start + size :]
                replays += 1
                if candidate and still_fails(candidate):
                    current = candidate  # the same start now holds the next chunk
                    progress = True
                else:
                    start += 1
        if not progress:
            return Minimized(current, replays, out_of_time=False)


def _chunk_sizes(length: int) -> list[int]:
    """Halves of the list, then every size up to :data:`SMALL_CHUNKS`, largest first:
    halving alone jumps from 3 to 1 and never tries the pairs that cancel out."""
    sizes = {1}
    size = length // 2
    while size > 1:
        sizes.add(size)
        size //= 2
    sizes.update(range(1, min(SMALL_CHUNKS, length - 1) + 1))
    return sorted(sizes, reverse=True)


def shows_anomaly(
    kind: AnomalyKind,
    *,
    canaries: frozenset[Canary],
    replicas: int,
    backend: SimBackend = SimBackend.REDIS,
) -> StillFails:
    """A ``still_fails`` for replays: the run (decisions, then heal if still safe)
    reports an anomaly of class ``kind``. A replay that crashes does not count."""

    def still_fails(decisions: list[Decision]) -> bool:
        try:
            result = replay_decisions(
                decisions, canaries=canaries, replicas=replicas, backend=backend
            )
        except SimulationCrashed:  # the world failed to start
            return False
        if result.crashed is not None:
            return False
        return any(a.kind is kind for a in result.report.anomalies)

    return still_fails


def crashes_like(
    signature: str,
    *,
    canaries: frozenset[Canary],
    replicas: int,
    backend: SimBackend = SimBackend.REDIS,
) -> StillFails:
    """A ``still_fails`` for replays: the world crashes with the same innermost error,
    raised at the same place (:func:`~streamcheck.properties._replay.crash_signature`)."""

    def still_fails(decisions: list[Decision]) -> bool:
        try:
            result = replay_decisions(
                decisions, canaries=canaries, replicas=replicas, backend=backend
            )
        except SimulationCrashed:
            return False
        return result.crashed is not None and crash_signature(result.crashed) == signature

    return still_fails


@dataclass(frozen=True, slots=True)
class MinimizedReplay:
    #: Decisions in the file before and after.
    before: int
    after: int
    replays: int
    out_of_time: bool
    #: The checker's report on the file's run, as now written in it (for a crash, the
    #: safety report at the crash).
    report: CheckReport


def minimize_replay_file(
    path: Path, *, seconds: float = MINIMIZE_SECONDS
) -> MinimizedReplay | None:
    """Minimize the replay file at ``path`` in place, keeping the class of its first
    anomaly, or its crash; ``None`` if it has neither or does not reproduce (then it is
    left as is). The rewritten file says, under ``minimized``, how long the list was
    before."""
    decisions, canaries, replicas, data = load_replay(path)
    backend = replay_backend(data)
    crashed = data.get("crashed")
    anomalies = data["report"]["anomalies"]
    if crashed:
        kept = "crash"
        still_fails = crashes_like(
            crash_signature(crashed), canaries=canaries, replicas=replicas, backend=backend
        )
    elif anomalies:
        kept = anomalies[0]["kind"]
        still_fails = shows_anomaly(
            AnomalyKind(kept), canaries=canaries, replicas=replicas, backend=backend
        )
    else:
        return None
    if not still_fails(decisions):
        return None
    result = minimize_decisions(decisions, still_fails, deadline=time.monotonic() + seconds)
    extra = {
        # Hypothesis's shrunk example's rule count, which this file shortens.
        "rule_steps": data.get("rule_steps"),
        "hypothesis_seed": data.get("hypothesis_seed"),
        "minimized": {
            "from_decisions": len(decisions),
            "replays": result.replays,
            "out_of_time": result.out_of_time,
            "kept_anomaly": kept,
        },
    }
    rewrite = len(result.decisions) < len(decisions)
    with replay_simulation(canaries=canaries, replicas=replicas, backend=backend) as simulation:
        try:
            report = apply_and_judge(simulation, result.decisions)
        except SimulationCrashed as crash:
            report = simulation.safety_report()
            if rewrite:
                write_crash_replay_file(
                    path, name=data["name"], simulation=simulation, crash=crash, extra=extra
                )
        else:
            if rewrite:
                write_replay_file(
                    path, name=data["name"], simulation=simulation, report=report, extra=extra
                )
    return MinimizedReplay(
        before=len(decisions),
        after=len(result.decisions),
        replays=result.replays,
        out_of_time=result.out_of_time,
        report=report,
    )
