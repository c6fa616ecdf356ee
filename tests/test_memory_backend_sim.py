"""The state machine over impl/'s memory backend (properties/_memory_sim.py), as CI runs it.

* The correct implementation survives a memory campaign and reaches the rare paths the
  memory backend has.
* The memory hub delivers as it publishes: nothing waits for a step.
* Mutants of the memory bus, hub and job store are judged by the memory campaign.
* A memory run's replay file names its backend and replays deterministically; decisions
  that need Redis are refused on the memory backend, in a run and in a replay file.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import pytest

from streamcheck.model import Chunk, Delivered
from streamcheck.properties._campaign import MEMORY_REQUIRED_LABELS, run_campaign
from streamcheck.properties._mutants import (
    MEMORY_BACKEND_MODULES,
    NOT_SIMULATED,
    campaign_backend,
    mutation_command,
)
from streamcheck.properties._replay import (
    load_replay,
    replay_twice,
    run_decisions,
    write_replay_file,
)
from streamcheck.properties._replay_schema import ReplayFileError, check_replay, replay_backend
from streamcheck.properties._run_limits import SimBackend
from streamcheck.properties._simulation import Decision, Simulation

#: CI budget on the memory backend, derandomized; STREAMCHECK_MEMORY_EXAMPLES raises it.
MEMORY_EXAMPLES = int(os.environ.get("STREAMCHECK_MEMORY_EXAMPLES", "300"))

A_TURN_READ_ON_ANOTHER_REPLICA = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s0", "replica": 1}),
    Decision("settle"),
    Decision("emit", {"stream": "s0"}),
    Decision("pump"),
]


def test_correct_implementation_survives_the_memory_backend(tmp_path: Path) -> None:
    replay = tmp_path / "memory.json"
    result = run_campaign(
        examples=MEMORY_EXAMPLES, seed=0, replay_file=replay, backend=SimBackend.MEMORY
    )
    assert result.crashed is None, result.crashed
    assert not result.found, f"{result.anomaly_kinds}; replay with: streamcheck replay {replay}"
    assert result.required_labels == MEMORY_REQUIRED_LABELS
    missing = result.unreached_labels
    assert not missing, f"rare paths never reached: {missing}; reached: {result.labels}"


def test_the_memory_hub_delivers_within_the_decision() -> None:
    """The hub fans a message out as it publishes it: no step is left for the driver."""
    simulation = Simulation(backend=SimBackend.MEMORY)
    try:
        for decision in A_TURN_READ_ON_ANOTHER_REPLICA:
            simulation.apply(decision)
        assert not simulation.in_flight_messages()
        assert _delivered_chunks(simulation) == 1
        assert simulation.safety_report().ok
    finally:
        simulation.close()


def test_an_idle_probe_meeting_an_emit_takes_no_slow_path() -> None:
    """Found when each bus call and delivery was a drawn step: the reader's idle probe
    read the chunk from the log while its fan-out was held back, a state the hub, which
    logs and fans out in one call, cannot reach (reported as a slow path without
    cause). Replayed on the memory backend as it is, the reader gets it live."""
    decisions = [
        Decision("create", {"stream": "s1", "replica": 0}),
        Decision("pump"),
        Decision("subscribe", {"stream": "s1", "replica": 1}),
        Decision("settle"),
        Decision("jump", {"dt": 2.5}),
        Decision("emit", {"stream": "s1"}),
    ]
    result, deterministic = replay_twice(
        decisions, canaries=frozenset(), replicas=2, backend=SimBackend.MEMORY
    )
    assert deterministic and result.crashed is None
    assert result.report.ok, result.report.summary()


def _delivered_chunks(simulation: Simulation) -> int:
    assert simulation.world is not None
    return sum(
        1
        for record in simulation.world.history.records
        if isinstance(record, Delivered) and isinstance(record.event, Chunk)
    )


def test_a_memory_replay_file_names_its_backend_and_replays(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    decisions = [
        *A_TURN_READ_ON_ANOTHER_REPLICA,
        Decision("finish", {"stream": "s0", "error": False}),
    ]
    with run_decisions(decisions, canaries=frozenset(), replicas=2, backend=SimBackend.MEMORY) as (
        simulation,
        report,
    ):
        write_replay_file(path, name="memory", simulation=simulation, report=report)
    assert report.ok, report.summary()
    loaded, canaries, replicas, data = load_replay(path)
    assert data["backend"] == "memory" and replay_backend(data) is SimBackend.MEMORY
    rerun, deterministic = replay_twice(
        loaded, canaries=canaries, replicas=replicas, backend=SimBackend.MEMORY
    )
    assert deterministic
    assert rerun.history == data["history"]


@pytest.mark.parametrize("name", ["failover", "disconnect"])
def test_redis_decisions_are_refused_on_the_memory_backend(name: str) -> None:
    simulation = Simulation(backend=SimBackend.MEMORY)
    try:
        with pytest.raises(ValueError, match="needs the simulated Redis"):
            simulation.apply(Decision(name, {} if name == "failover" else {"k": 0}))
    finally:
        simulation.close()
    document = {
        "version": 2,
        "replicas": 2,
        "canaries": [],
        "backend": "memory",
        "decisions": [[name, {} if name == "failover" else {"k": 0}]],
    }
    with pytest.raises(ReplayFileError, match="needs the simulated Redis"):
        check_replay(json.loads(json.dumps(document)))
    with pytest.raises(ReplayFileError, match="backend"):
        check_replay({**document, "backend": "etcd", "decisions": []})


def test_mutants_of_the_memory_modules_meet_the_memory_campaign(tmp_path: Path) -> None:
    for module in MEMORY_BACKEND_MODULES:
        assert campaign_backend(module) is SimBackend.MEMORY
        assert not any(fnmatch.fnmatch(module, p) for p in NOT_SIMULATED)
    assert campaign_backend("transport/_actor.py") is SimBackend.REDIS
    command = mutation_command(tmp_path, examples=5, seed=0, backend=SimBackend.MEMORY)
    assert command.endswith("--backend memory")
