"""Two real peers under the real-Redis tier (ports/peers, installed from npm): vercel
``resumable-stream`` on the harness's Redis, and Durable Streams with the server the
harness starts from the agent's hello. Also the harness support they need: plans drawn
for the promises an implementation makes, an implementation's own server, a text stream's
end without a payload. docs/peers.md has the campaign's figures and findings."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from streamcheck.model import AnomalyKind, Done
from streamcheck.properties.cli import EXIT_OK, EXIT_USAGE, main
from streamcheck.properties.protocol import Op, ProtocolError
from streamcheck.properties.protocol._identity import PlanIdentity
from streamcheck.properties.protocol._messages import Init, parse_hello, parse_init
from streamcheck.properties.realredis._harness import (
    OWN_SERVER_FAULTS,
    PROFILES,
    Backend,
    FaultKind,
    RunResult,
    applicable_faults,
    run_once,
)
from streamcheck.properties.realredis._plan import Workload, draw_plans, load_plans, save_plans
from streamcheck.properties.realredis._servers import OwnServer, have_redis_binaries

PEERS = Path(__file__).resolve().parent.parent / "ports" / "peers"
RESUMABLE_STREAM = ["node", str(PEERS / "resumable-stream-agent.mjs")]
DURABLE_STREAMS = ["node", str(PEERS / "durable-streams-agent.mjs")]
NPM_CI_TIMEOUT_S = 300

# One worker under pytest-xdist: ``npm ci`` (the fixture below, once per module and so
# once per worker) deletes ports/peers/node_modules while another worker's agents run.
pytestmark = pytest.mark.xdist_group("ports-peers")

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node/npm not installed: the peers' agents in ports/peers are not run",
)
needs_redis = pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH")


@pytest.fixture(scope="module")
def peers() -> Path:
    """ports/peers installed from its lock file (once; kept if already installed from
    this very lock)."""
    installed = PEERS / "node_modules" / ".package-lock.json"
    lock = PEERS / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return PEERS
    try:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEERS,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {PEERS} took more than {NPM_CI_TIMEOUT_S} s")
    if done.returncode != 0:
        pytest.fail(f"npm ci in {PEERS} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return PEERS


def run(command: list[str], fault: FaultKind, tmp_path: Path, seed: int = 1) -> RunResult:
    result = trio.run(
        lambda: run_once(
            Backend.REDIS, fault, PROFILES["short"], seed, tmp_path, commands=[command]
        )
    )
    assert not result.agent_failures, result.agent_failures
    assert result.report.unknown_reason is None, result.report.unknown_reason
    assert result.events > 0
    return result


# -- the harness support -------------------------------------------------------------------


def test_a_plan_for_an_implementation_without_abort_or_error_terminals_ends_turns_with_done() -> (
    None
):
    workload = Workload(replicas=3, streams=12, chunks=3, chunk_interval_s=0.01, duration_s=2.0)
    full = draw_plans(workload, random.Random(5))
    plain = draw_plans(workload, random.Random(5), aborts=False, errors=False)
    ops = {a.op for actions in full for a in actions}
    assert {Op.ABORT, Op.ERROR} <= ops  # this seed draws both
    assert not {Op.ABORT, Op.ERROR} & {a.op for actions in plain for a in actions}
    # Everything else is the same plan: the same ids for the same creates, emits, readers.
    kept = {Op.CREATE, Op.EMIT, Op.SUBSCRIBE, Op.RESUME, Op.DETACH}
    assert [[a for a in p if a.op in kept] for p in full] == [
        [a for a in p if a.op in kept] for p in plain
    ]


def test_saved_plans_load_back_and_a_bad_file_is_a_protocol_error(tmp_path: Path) -> None:
    workload = Workload(replicas=2, streams=2, chunks=2, chunk_interval_s=0.01, duration_s=1.0)
    plans = draw_plans(workload, random.Random(1))
    save_plans(plans, tmp_path / "plans.json")
    assert load_plans(tmp_path / "plans.json") == plans
    (tmp_path / "bad.json").write_text(json.dumps([[{"op": "emit"}]]))
    with pytest.raises(ProtocolError, match="'id'"):
        load_plans(tmp_path / "bad.json")


def test_a_hello_with_its_own_storage_names_the_server_command() -> None:
    hello = {
        "type": "hello",
        "protocol": 1,
        "implementation": {"name": "x", "version": "1"},
        "capabilities": {
            "seqs": False,
            "resume": "offset",
            "abort": False,
            "gap_events": False,
            "error_terminals": True,
            "storage": "own",
        },
        "server": {"command": ["srv", "--port", "{port}"]},
    }
    assert parse_hello(hello).server_command == ("srv", "--port", "{port}")
    with pytest.raises(ProtocolError, match="'server'"):
        parse_hello({k: v for k, v in hello.items() if k != "server"})
    init = Init(
        replica="r0", redis_url=None, server_url="http://127.0.0.1:9", cluster=False, mode="plan"
    )
    assert parse_init(json.loads(init.to_line())) == init
    assert set(applicable_faults(Backend.REDIS, True)) == set(OWN_SERVER_FAULTS)
    assert FaultKind.PUBSUB_KILL not in OWN_SERVER_FAULTS
    assert applicable_faults(Backend.CLUSTER, True) == ()


def test_an_own_server_is_started_frozen_restarted_on_its_port_and_stopped(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    with OwnServer([*command, "--directory", "{dir}"], tmp_path / "server.log") as server:
        port = server.port
        assert _answers(server.url)
        server.pause()
        assert not _answers(server.url)
        server.resume()
        server.restart()
        assert server.port == port and _answers(server.url)
    assert not _answers(server.url)


#: An agent that says a hello for an implementation with its own server, then exits.
OWN_SERVER_HELLO = (
    "import json; print(json.dumps({'type': 'hello', 'protocol': 1, "
    "'implementation': {'name': 'own', 'version': '0'}, 'capabilities': {'seqs': False, "
    "'resume': 'none', 'abort': False, 'gap_events': False, 'error_terminals': False, "
    "'storage': 'own'}, 'server': {'command': ['true']}}), flush=True)"
)


@needs_redis
def test_a_redis_fault_for_an_implementation_with_its_own_server_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impl = f'{sys.executable} -c "{OWN_SERVER_HELLO}"'
    argv = ["run", "--backend", "redis", "--impl", impl, "--reports", str(tmp_path)]
    assert main([*argv, "--faults", "client-kill-pubsub"]) == EXIT_USAGE
    assert "with an implementation with its own server" in capsys.readouterr().err


@pytest.mark.redis
@needs_redis
def test_a_saved_plan_runs_again_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = Workload(replicas=2, streams=1, chunks=5, chunk_interval_s=0.02, duration_s=1.0)
    save_plans(draw_plans(workload, random.Random(4)), tmp_path / "plans.json")
    argv = ["run", "--backend", "redis", "--faults", "none", "--reports", str(tmp_path)]
    assert main([*argv, "--plan", str(tmp_path / "plans.json")]) == EXIT_OK
    assert "2 replicas" in capsys.readouterr().out
    assert main([*argv, "--plan", str(tmp_path / "missing.json")]) == EXIT_USAGE


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=0.5):
            return True
    except OSError:
        return False


def test_a_text_stream_end_without_a_payload_stands_for_the_turn_planned_done() -> None:
    workload = Workload(replicas=2, streams=1, chunks=2, chunk_interval_s=0.01, duration_s=1.0)
    plans = draw_plans(workload, random.Random(2), aborts=False, errors=False)
    identity = PlanIdentity({a.id: a for actions in plans for a in actions})
    [event] = identity.events({"kind": "done"}, "s0.t1", "test")
    assert event == Done(seq=2, generation="s0.t1", data={"id": "s0.t1#done"})


# -- the peers -----------------------------------------------------------------------------


@pytest.mark.redis
@needs_node
@needs_redis
@pytest.mark.parametrize(
    ("command", "name"),
    [
        (RESUMABLE_STREAM, "vercel-resumable-stream 2."),
        (DURABLE_STREAMS, "durable-streams-memory-long-poll server 0."),
    ],
    ids=["resumable-stream", "durable-streams-memory"],
)
def test_a_peer_without_faults_is_clean(
    peers: Path, tmp_path: Path, command: list[str], name: str
) -> None:
    result = run(command, FaultKind.NONE, tmp_path)
    assert result.implementation.startswith(name)
    assert "cross-replica abort" in result.not_exercised
    assert result.report.ok, result.report.summary()


#: What the campaign found for each peer under a fault (docs/peers.md, with a reproduction
#: in ports/peers/findings/ each): the classes a run may show. Anything else is new.
KNOWN_FINDINGS = [
    # resumable-stream: pub/sub keeps nothing for a reader whose subscription is down.
    (
        RESUMABLE_STREAM,
        FaultKind.PUBSUB_KILL,
        {AnomalyKind.SKIPPED_WITHOUT_GAP, AnomalyKind.LOST, AnomalyKind.TERMINAL_BEFORE_CHUNKS},
    ),
    # resumable-stream: the chunks live in the producer's memory only.
    (RESUMABLE_STREAM, FaultKind.REPLICA_KILL, {AnomalyKind.TERMINAL_MISSING, AnomalyKind.LOST}),
    # Durable Streams: the in-memory store forgets every stream when its server restarts.
    (DURABLE_STREAMS, FaultKind.RESTART, {AnomalyKind.TERMINAL_MISSING, AnomalyKind.LOST}),
    # Durable Streams: one network error wedges the client's IdempotentProducer (a bug).
    (DURABLE_STREAMS, FaultKind.CUT, {AnomalyKind.TERMINAL_MISSING, AnomalyKind.LOST}),
]


@pytest.mark.redis
@needs_node
@needs_redis
@pytest.mark.parametrize(
    ("command", "fault", "known"),
    KNOWN_FINDINGS,
    ids=[f"{Path(c[1]).stem}-{f}" for c, f, _ in KNOWN_FINDINGS],
)
def test_a_peer_under_a_fault_shows_only_its_known_behaviour(
    peers: Path, tmp_path: Path, command: list[str], fault: FaultKind, known: set[AnomalyKind]
) -> None:
    result = run(command, fault, tmp_path)
    assert result.report.kinds() <= known, result.report.summary()


@pytest.mark.redis
@needs_node
@needs_redis
def test_durable_streams_file_store_long_poll_readers_miss_the_closing_message(
    peers: Path, tmp_path: Path
) -> None:
    # A real bug of @durable-streams/server's file-backed store (ports/peers/findings/
    # durable-streams-file-long-poll-close): a reader long-polling at the tail when the
    # final message is appended with the close is told "closed" at the old offset.
    result = run([*DURABLE_STREAMS, "--store", "file"], FaultKind.NONE, tmp_path)
    assert AnomalyKind.TERMINAL_MISSING in result.report.kinds(), result.report.summary()
