"""The Node port (ports/node/): the same Lua and envelope as impl/, its own unit tests, and
the real-Redis short profile with Node agents alone and mixed with Python agents on the
same streams; the subscribe-before-ack agent of its test folder is found under latency.

The real-Redis tests need node and npm (skipped with one line otherwise); ``npm ci`` runs
into ports/node once per session. The runs-to-first-failure of the historical agent are
recorded as the test's ``runs_to_first_failure`` property (pytest's ``--junitxml``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from streamcheck.impl.jobstore import _lua as job_lua
from streamcheck.impl.redis import LuaScript
from streamcheck.impl.transport import _lua as transport_lua
from streamcheck.impl.transport._envelope import encode_abort, encode_body, encode_split
from streamcheck.properties.protocol import PYTHON_AGENT
from streamcheck.properties.realredis._harness import (
    FAULTS,
    PROFILES,
    Backend,
    FaultFigures,
    FaultKind,
    Profile,
    RunResult,
    run_tier,
)
from streamcheck.properties.realredis._plan import Workload
from streamcheck.properties.realredis._servers import have_redis_binaries

PORT = Path(__file__).resolve().parent.parent / "ports" / "node"
NODE = shutil.which("node")
NPM = shutil.which("npm")
NODE_AGENT = [NODE or "node", str(PORT / "agent.js")]
PYTHON = list(PYTHON_AGENT)

# Under pytest-xdist every worker is a session of its own, and ``npm ci`` first deletes
# node_modules: one worker's install would pull the modules from under the other's
# agents. These tests therefore all run in one worker.
pytestmark = pytest.mark.xdist_group("ports-node")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH")
needs_node_and_redis = pytest.mark.skipif(
    NODE is None or NPM is None or not have_redis_binaries(),
    reason="node, npm or redis-server is not on PATH",
)

#: Bounded, so a registry that does not answer fails the session instead of hanging it.
NPM_CI_TIMEOUT_S = 300
#: Runs of the race profile within which the subscribe-before-ack agent must be caught
#: (measured: an anomaly in 4 runs of 6; the chance of 8 clean runs is about 1 in 10,000).
RACE_RUNS = 8
#: Many streams, so that many readers subscribe for the first time on a replica while
#: the latency fault holds their SUBSCRIBE: each such subscribe is one chance of the race.
RACE = Profile(
    "race",
    runs_per_fault=1,
    workload=Workload(replicas=3, streams=24, chunks=40, chunk_interval_s=0.02, duration_s=2.5),
    heal_s=4.0,
)

#: The port's scripts (by their names in ports/node) and impl's.
SCRIPTS: dict[str, LuaScript] = {
    "publish": transport_lua.PUBLISH,
    "mark_lost": transport_lua.MARK_LOST,
    "claim_abort": transport_lua.CLAIM_ABORT,
    "abort_claimed": transport_lua.ABORT_CLAIMED,
    "job_create": job_lua.CREATE,
    "job_update": job_lua.UPDATE,
    "job_delete": job_lua.DELETE,
    "job_touch": job_lua.TOUCH,
}


def _node(port: Path, script: str, *args: str) -> str:
    """What a module-mode snippet run in ``port`` prints."""
    return subprocess.run(
        [str(NODE), "--input-type=module", "-e", script, *args],
        cwd=port,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


@needs_node
def test_the_port_writes_the_envelope_impl_writes() -> None:
    bodies = [
        {"id": "s0.t1#4", "text": "café 😀 \x7f\n", "nested": [[], {}, None, True, 12]},
        'an error\'s message with "quotes" and é',
    ]
    script = (
        "import { encodeAbort, encodeBody, encodeSplit } from './src/envelope.js';"
        "const bodies = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify([...bodies.map((b, i) =>"
        " encodeSplit(i ? 'error' : 'chunk', 'gé-1', encodeBody(b))), encodeAbort('gé-1')]));"
    )
    out = _node(PORT, script, json.dumps(bodies))
    expected = [
        list(encode_split("chunk", "gé-1", bodies[0], encoded_body=encode_body(bodies[0]))),
        list(encode_split("error", "gé-1", bodies[1])),
        encode_abort("gé-1"),
    ]
    assert json.loads(out) == expected


@pytest.fixture(scope="session")
def node_port() -> Path:
    """ports/node with its locked dependencies installed (``npm ci``, once a session)."""
    try:
        done = subprocess.run(
            [str(NPM), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PORT,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {PORT} did not finish within {NPM_CI_TIMEOUT_S} s")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        pytest.fail(f"npm ci in {PORT} failed (exit {done.returncode}):\n{tail}")
    return PORT


@needs_node_and_redis
def test_the_port_runs_impls_lua_scripts_byte_for_byte(node_port: Path) -> None:
    # One text and one SHA on the wire: the port keeps copies, and must follow every change.
    script = (
        "import { PUBLISH, MARK_LOST, CLAIM_ABORT, ABORT_CLAIMED } from './src/bus.js';"
        "import { SCRIPTS } from './src/jobstore.js';"
        "const all = [PUBLISH, MARK_LOST, CLAIM_ABORT, ABORT_CLAIMED, ...Object.values(SCRIPTS)];"
        "const pairs = all.map((s) => [s.name, [s.source, s.sha1]]);"
        "console.log(JSON.stringify(Object.fromEntries(pairs)));"
    )
    port = json.loads(_node(node_port, script))
    assert sorted(port) == sorted(SCRIPTS)
    for name, script_of_impl in SCRIPTS.items():
        assert port[name] == [script_of_impl.source, script_of_impl.sha1], (
            f"the port's {name} script differs from impl's {script_of_impl.name}: copy the new "
            "text into ports/node/src/lua/ and adapt the port's arguments"
        )


@needs_node_and_redis
def test_the_ports_own_unit_tests_pass(node_port: Path) -> None:
    tests = sorted(str(p.relative_to(node_port)) for p in (node_port / "test").glob("*.test.js"))
    done = subprocess.run(
        [str(NODE), "--test", *tests], cwd=node_port, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _tier(
    commands: Sequence[list[str]], profile: Profile, *, seed: int, faults: tuple[FaultKind, ...]
) -> tuple[list[FaultFigures], list[RunResult]]:
    runs: list[RunResult] = []

    async def tier() -> list[FaultFigures]:
        return await run_tier(
            Backend.REDIS,
            profile,
            seed=seed,
            faults=faults,
            on_run=runs.append,
            commands=commands,
        )

    return trio.run(tier), runs


def _assert_clean(commands: Sequence[list[str]]) -> None:
    figures, runs = _tier(commands, PROFILES["short"], seed=1, faults=FAULTS[Backend.REDIS])
    lines = "\n".join(f"{r.fault}: {r.report.summary()} {r.agent_failures}" for r in runs)
    assert [f.fault for f in figures] == list(FAULTS[Backend.REDIS])
    for f in figures:
        assert f.runs == 1 and f.events > 0, lines
        assert not f.anomalies and not f.agent_failures, lines
        if f.fault is not FaultKind.NONE:
            assert f.faults_injected > 0, f.fault


@pytest.mark.redis
@needs_node_and_redis
def test_node_replicas_find_nothing_under_every_fault(node_port: Path) -> None:
    _assert_clean([NODE_AGENT])


@pytest.mark.redis
@needs_node_and_redis
def test_python_and_node_replicas_on_the_same_streams_find_nothing_under_every_fault(
    node_port: Path,
) -> None:
    # Replicas r0 and r2 run Python, r1 Node: each language produces some streams and
    # reads, resumes and aborts those of the other.
    _assert_clean([PYTHON, NODE_AGENT])


def _runs_to_first_failure(command: list[str], runs: int, seed: int) -> tuple[int | None, str]:
    """The 1-based run whose history had an anomaly (None if none of ``runs`` did)."""
    for n in range(1, runs + 1):
        _, [result] = _tier([command], RACE, seed=seed + n, faults=(FaultKind.LATENCY,))
        assert not result.agent_failures, result.agent_failures
        if not result.report.ok:
            return n, result.report.summary()
    return None, ""


@pytest.mark.redis
@needs_node_and_redis
def test_the_subscribe_before_ack_agent_is_caught_under_latency(
    node_port: Path, record_property: Callable[[str, object], None]
) -> None:
    agent = [str(NODE), str(node_port / "test" / "agents" / "subscribe-before-ack.js")]
    found, summary = _runs_to_first_failure(agent, RACE_RUNS, seed=4000)
    record_property("runs_to_first_failure", found)
    assert found is not None, f"not caught in {RACE_RUNS} runs of the race profile"
    assert "skipped_without_gap" in summary, summary
