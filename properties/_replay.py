"""Replay files: a failing run as data, and re-running it without Hypothesis.

A replay file (``reports/failures/<name>.json``) holds the settings, the canaries, the
decision list, the recorded history and the checker's report. ``replay`` re-executes
the decisions in a fresh :class:`Simulation` with trio's scheduler seeded as
Hypothesis seeds it, and returns the new history and report; ``replay_twice`` is the
determinism self-check (both runs must produce identical histories).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamcheck.model import CheckReport, History, Record
from streamcheck.properties._replay_schema import (
    REPLAY_VERSION,
    ReplayFileError,
    check_replay,
)
from streamcheck.properties._run_limits import SimBackend
from streamcheck.properties._simulation import (
    Decision,
    Simulation,
    SimulationCrashed,
    describe_crash,
)
from streamcheck.properties.canaries import Canary

#: The last steps of the simulated Redis a replay file keeps (as lines and as records).
TRACE_RECORDS = 2000


def record_to_json(record: Record) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            out["type"] = type(value).__name__
            return out
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        return value

    result: dict[str, Any] = convert(record)
    return result


def history_to_json(history: History) -> list[dict[str, Any]]:
    return [record_to_json(r) for r in history.records]


def write_replay_file(
    path: Path,
    *,
    name: str,
    simulation: Simulation,
    report: CheckReport,
    hypothesis_seed: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the replay file; ``extra`` adds (or overrides) top-level fields. Raises
    :class:`ReplayFileError` if what was written would not load."""
    assert simulation.world is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "version": REPLAY_VERSION,
        "name": name,
        "canaries": sorted(c.value for c in simulation.canaries),
        "replicas": len(simulation.world.replicas),
        "backend": simulation.backend.value,
        "hypothesis_seed": hypothesis_seed,
        "decisions": [d.to_json() for d in simulation.decisions],
        "rule_steps": simulation.rule_steps,
        "history": history_to_json(simulation.world.history),
        "report": report.to_json(),
        "redis_trace": simulation.sim.trace[-TRACE_RECORDS:] if simulation.sim is not None else [],
        # The same steps as typed records (streamcheck.properties.sim._trace), which the
        # timeline reads.
        "redis_records": (
            [r.to_json() for r in simulation.sim.records[-TRACE_RECORDS:]]
            if simulation.sim is not None
            else []
        ),
    }
    data.update(extra or {})
    text = json.dumps(data, indent=1, sort_keys=True)
    path.write_text(text)
    # Checked as `streamcheck replay` will read it, so a step whose arguments the schema
    # does not allow fails the run that made it, not a later replay. Written first: the
    # file is still the evidence.
    check_replay(json.loads(text))
    return path


def write_crash_replay_file(
    path: Path,
    *,
    name: str,
    simulation: Simulation,
    crash: SimulationCrashed,
    extra: dict[str, Any] | None = None,
) -> Path:
    """The replay file of a run whose world crashed: the decisions up to the crash,
    the history so far, its safety report, and the crash under ``crashed``."""
    return write_replay_file(
        path,
        name=name,
        simulation=simulation,
        report=simulation.safety_report(),
        extra={"crashed": describe_crash(crash), **(extra or {})},
    )


def crash_signature(crashed: str) -> str:
    """What identifies a crash across replays of different decision lists: its
    innermost error, with where it was raised (the last line of ``describe_crash``)."""
    return crashed.strip().splitlines()[-1]


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayResult:
    report: CheckReport
    history: list[dict[str, Any]]
    crashed: str | None = None


def replay_decisions(
    decisions: list[Decision],
    *,
    canaries: frozenset[Canary],
    replicas: int,
    backend: SimBackend = SimBackend.REDIS,
) -> ReplayResult:
    """Run the decisions in a fresh simulation, then heal and judge; a crash of the
    simulated world is reported in ``crashed``, with the history up to it."""
    with replay_simulation(canaries=canaries, replicas=replicas, backend=backend) as simulation:
        crashed: str | None = None
        try:
            report = apply_and_judge(simulation, decisions)
        except SimulationCrashed as exc:
            crashed = describe_crash(exc)
            report = simulation.safety_report()
        assert simulation.world is not None
        return ReplayResult(report, history_to_json(simulation.world.history), crashed)


@contextlib.contextmanager
def replay_simulation(
    *, canaries: frozenset[Canary], replicas: int, backend: SimBackend = SimBackend.REDIS
) -> Iterator[Simulation]:
    """A fresh simulation as a replay runs it (trio's scheduler seeded as Hypothesis
    seeds it, impl's warnings off), closed when the block ends."""
    seed_scheduler()
    logging.disable(logging.WARNING)
    simulation = Simulation(replicas=replicas, canaries=canaries, backend=backend)
    try:
        yield simulation
    finally:
        simulation.close()


def apply_and_judge(simulation: Simulation, decisions: list[Decision]) -> CheckReport:
    """Apply ``decisions``, then judge safety, then heal and judge liveness if safe."""
    # A recorded run ends at the rule whose invariant failed (one rule may hold several
    # decisions), or ran to completion and failed in the heal phase.
    for decision in decisions:
        simulation.apply(decision)
    report = simulation.safety_report()
    return simulation.heal() if report.ok else report


@contextlib.contextmanager
def run_decisions(
    decisions: list[Decision],
    *,
    canaries: frozenset[Canary],
    replicas: int,
    backend: SimBackend = SimBackend.REDIS,
) -> Iterator[tuple[Simulation, CheckReport]]:
    """:func:`replay_decisions` as a block that gets the simulation itself (for
    :func:`write_replay_file`); it is closed when the block ends, which adds the
    records of its shutdown to the history."""
    with replay_simulation(canaries=canaries, replicas=replicas, backend=backend) as simulation:
        yield simulation, apply_and_judge(simulation, decisions)


def load_replay(path: Path) -> tuple[list[Decision], frozenset[Canary], int, dict[str, Any]]:
    """Read and validate a replay file: its decisions, canaries, replica count and the
    whole file. Raises :class:`ReplayFileError` (naming the field) for a file that is
    not a replay file this version can run, ``OSError`` for one that cannot be read."""
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReplayFileError("(file)", f"not JSON: {exc}") from None
    _, decisions, names, replicas = check_replay(data)
    canaries: set[Canary] = set()
    for index, name in enumerate(names):
        try:
            canaries.add(Canary(name))
        except ValueError:
            known = ", ".join(c.value for c in Canary)
            raise ReplayFileError(
                f"canaries[{index}]", f"unknown canary {name!r}; known: {known}"
            ) from None
    return decisions, frozenset(canaries), replicas, data


def replay_twice(
    decisions: list[Decision],
    *,
    canaries: frozenset[Canary],
    replicas: int,
    backend: SimBackend = SimBackend.REDIS,
) -> tuple[ReplayResult, bool]:
    """Run twice; the bool says whether both runs were identical (histories, and
    crashes if any)."""
    first = replay_decisions(decisions, canaries=canaries, replicas=replicas, backend=backend)
    second = replay_decisions(decisions, canaries=canaries, replicas=replicas, backend=backend)
    same = first.history == second.history and first.crashed == second.crashed
    return first, same


def seed_scheduler() -> None:
    # Hypothesis registers trio's scheduler Random and seeds it with 0 for every
    # example (deterministic_PRNG); do the same so a replay takes the same paths.
    from trio._core import _run

    setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final)
    _run._r.seed(0)
    random.seed(0)
