"""The RESP front: foreign replicas (agent processes) over the simulated Redis.

The codec is checked on its own; then streamcheck's own agent (coredis, RESP3) and the
Node port's (ioredis, RESP2) run a conversation through the front with every step
released by the harness, and a fixed decision list, the subscribe-before-acknowledgement
race, shows the Node port's historical behaviour while the correct port passes it. About
30 s on two cores, most of it starting agent processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from redis.exceptions import NoScriptError, ResponseError

from streamcheck.model import AnomalyKind, FaultInjected, WritesLost
from streamcheck.properties._simulation import Decision
from streamcheck.properties.cli import main
from streamcheck.properties.protocol import PYTHON_AGENT
from streamcheck.properties.sim import SimRedis, sim_time
from streamcheck.properties.sim.resp import (
    FOREIGN_SETTINGS,
    ForeignSimulation,
    Judged,
    RespFront,
    run_foreign_campaign,
)
from streamcheck.properties.sim.resp._codec import RequestParser, encode, error_line, push

PORT = Path(__file__).resolve().parent.parent / "ports" / "node"
NODE = shutil.which("node")
NPM = shutil.which("npm")
_without_node = pytest.mark.skipif(NODE is None or NPM is None, reason="node or npm is not on PATH")
# tests/test_node_port.py's ``npm ci`` deletes node_modules first: the Node tests of both
# modules run in one pytest-xdist worker, never while the other module installs.
_with_the_node_port_tests = pytest.mark.xdist_group("ports-node")


def needs_node(test: Callable[..., None]) -> Callable[..., None]:
    marked: Callable[..., None] = _with_the_node_port_tests(_without_node(test))
    return marked


#: A turn, a reader on the other replica, two chunks, the end: everything settled.
CONVERSATION = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s0", "replica": 1}),
    Decision("settle"),
    Decision("emit", {"stream": "s0"}),
    Decision("emit", {"stream": "s0"}),
    Decision("settle"),
    Decision("finish", {"stream": "s0"}),
]

#: The reader on r1 reads the job, then (not waiting for its SUBSCRIBE's acknowledgement)
#: the chunk log: the XRANGE runs, then the generator's publish (EVALSHA, NOSCRIPT, then
#: EVAL), and only then the SUBSCRIBE. Steps are picked among the runnable ones sorted by
#: description: [EVALSHA, SUBSCRIBE, XRANGE], then [EVALSHA, SUBSCRIBE], [EVAL, SUBSCRIBE].
SUBSCRIBE_RACE = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s0", "replica": 1}),
    Decision("step", {"k": 0}),
    Decision("emit", {"stream": "s0"}),
    Decision("step", {"k": 2}),
    Decision("step", {"k": 0}),
    Decision("step", {"k": 0}),
    Decision("settle"),
]


@pytest.fixture(scope="module")
def node_port() -> Path:
    """ports/node with its locked dependencies (``npm ci`` if they are missing)."""
    if not all((PORT / "node_modules" / name).exists() for name in ("ioredis", "redis")):
        done = subprocess.run(
            [str(NPM), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PORT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return PORT


def _run(commands: list[list[str]], decisions: list[Decision]) -> Judged:
    sim = ForeignSimulation(commands)
    sim.start()
    try:
        for decision in decisions:
            sim.apply(decision)
        return sim.heal()
    finally:
        assert sim.close() == []


@pytest.fixture
def python_agents() -> Iterator[list[list[str]]]:
    yield [list(PYTHON_AGENT), list(PYTHON_AGENT)]


# -- the codec ---------------------------------------------------------------------------


def test_the_parser_takes_pipelined_split_and_inline_commands() -> None:
    parser = RequestParser()
    wire = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\nPING hi\r\n"
    assert parser.feed(wire[:7]) == []
    assert parser.feed(wire[7:]) == [[b"GET", b"k"], [b"PING"], [b"PING", b"hi"]]


def test_replies_take_the_connections_protocol() -> None:
    assert encode({b"a": b"1"}, 3) == b"%1\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert encode({b"a": b"1"}, 2) == b"*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert encode(None, 2) == b"$-1\r\n" and encode(None, 3) == b"_\r\n"
    assert encode(b"OK", 2) == b"+OK\r\n"
    assert encode([b"OK"], 2) == b"*1\r\n$2\r\nOK\r\n"
    assert push([b"message", b"c", b"x"], 3).startswith(b">3\r\n")
    assert push([b"message", b"c", b"x"], 2).startswith(b"*3\r\n")


def test_error_codes_survive_fakeredis_folding_them_away() -> None:
    # ioredis falls back from EVALSHA to EVAL on the NOSCRIPT code.
    assert error_line(NoScriptError("No matching script.")) == b"-NOSCRIPT No matching script.\r\n"
    assert error_line(ResponseError("unknown command")) == b"-ERR unknown command\r\n"
    assert error_line(ResponseError("WRONGTYPE Operation")) == b"-WRONGTYPE Operation\r\n"


# -- agents through the front -----------------------------------------------------------------


def test_streamchecks_own_agent_runs_through_the_front(python_agents: list[list[str]]) -> None:
    judged = _run(python_agents, CONVERSATION)
    assert judged.report.ok, judged.report.summary()
    assert judged.report.statistics.events_delivered == 3
    # Every command was a step the harness released: the trace has them all.
    assert any("SUBSCRIBE stream:{s0}:events" in line for line in judged.trace)
    assert any("deliver r1/s0 ack subscribe" in line for line in judged.trace)


def test_a_campaign_of_streamchecks_own_agent_passes(python_agents: list[list[str]]) -> None:
    campaign = run_foreign_campaign(python_agents, examples=3, seed=3, steps=6)
    assert not campaign.failed, (campaign.report, campaign.crash)
    assert campaign.rule_steps > 0 and campaign.decisions >= campaign.rule_steps


@needs_node
def test_the_node_port_runs_through_the_front(node_port: Path) -> None:
    agent = [str(NODE), str(node_port / "agent.js")]
    judged = _run([agent, agent], CONVERSATION)
    assert judged.report.ok, judged.report.summary()
    assert judged.report.statistics.events_delivered == 3


@needs_node
def test_the_subscribe_race_finds_the_node_ports_historical_behaviour(node_port: Path) -> None:
    correct = [str(NODE), str(node_port / "agent.js")]
    judged = _run([correct, correct], SUBSCRIBE_RACE)
    assert judged.report.ok, judged.report.summary()
    historical = [str(NODE), str(node_port / "test" / "agents" / "subscribe-before-ack.js")]
    judged = _run([historical, historical], SUBSCRIBE_RACE)
    kinds = judged.report.by_kind()
    assert AnomalyKind.TERMINAL_BEFORE_CHUNKS in kinds, judged.report.summary()
    # The mechanism, in the trace: the publish ran before the reader's SUBSCRIBE.
    publish = next(i for i, line in enumerate(judged.trace) if "exec r0/c0 EVAL " in line)
    subscribe = next(i for i, line in enumerate(judged.trace) if "exec r1/s0 SUBSCRIBE" in line)
    assert publish < subscribe


#: A reader whose second chunk is lost in flight; then time passes for its timers.
LOST_THEN_TIMERS = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s0", "replica": 1}),
    Decision("settle"),
    Decision("emit", {"stream": "s0"}),
    Decision("settle"),
    Decision("lossy_emit", {"stream": "s0", "k": 0}),
    Decision("settle"),
    Decision("wait", {"timer": "reorder_timeout"}),
    Decision("wait", {"timer": "idle_probe"}),
]

#: A chunk acknowledged to its generator is lost by a failover; the turn goes on.
FAILOVER_LOSES_A_CHUNK = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s0", "replica": 1}),
    Decision("settle"),
    Decision("emit", {"stream": "s0"}),
    Decision("settle"),
    Decision("failover_after_emit", {"stream": "s0"}),
    Decision("settle"),
    Decision("emit", {"stream": "s0"}),
    Decision("settle"),
]


#: A turn ends and its end is lost by a failover (the standby had not received it): only
#: the producer timeout can tell the reader (found by a campaign of the failover family).
FAILOVER_LOSES_THE_END = [
    Decision("create", {"stream": "s0", "replica": 0}),
    Decision("create", {"stream": "s1", "replica": 0}),
    Decision("settle"),
    Decision("subscribe", {"stream": "s1", "replica": 1}),
    Decision("settle"),
    Decision("finish", {"stream": "s1"}),
    Decision("failover_after_emit", {"stream": "s0"}),
]


def test_a_reader_whose_turns_end_a_failover_lost_gets_its_terminal(
    python_agents: list[list[str]],
) -> None:
    """The heal phase moves the harness clocks past the producer timeout after a
    failover, as the in-process heal does; without that the reader waits forever."""
    judged = _run(python_agents, FAILOVER_LOSES_THE_END)
    assert judged.report.ok, judged.report.summary()
    assert judged.report.statistics.sessions_judged_for_liveness == 1
    assert judged.timings.advanced_s > FOREIGN_SETTINGS["producer_timeout_s"]


def test_clock_jumps_reach_agents_on_the_harness_clock_without_real_waits(
    python_agents: list[list[str]],
) -> None:
    sim = ForeignSimulation(python_agents)
    sim.start()
    try:
        for decision in LOST_THEN_TIMERS:
            sim.apply(decision)
        timings = sim.world.timings
        assert sim.world.harness_clock
        assert timings.waited_s == 0 and timings.advanced_s > 0.85, timings
        # The lost chunk came from the chunk log once the reader's timers fired.
        assert sim.judge_now().report.statistics.events_delivered == 2
        assert sim.heal().report.ok
    finally:
        assert sim.close() == []


@needs_node
def test_a_failover_that_loses_a_write_is_a_decision_for_foreign_replicas(
    node_port: Path,
) -> None:
    """Python and Node replicas on one stream: a chunk acknowledged to the generator is
    lost by the failover; the history says so (as the in-process world's does) and the
    readers are told with a typed gap, which the checker accepts for lost writes."""
    node = [str(NODE), str(node_port / "agent.js")]
    judged = _run([list(PYTHON_AGENT), node], FAILOVER_LOSES_A_CHUNK)
    assert judged.report.ok, judged.report.summary()
    lost = [r for r in judged.history.records if isinstance(r, WritesLost)]
    assert lost and lost[0].writes >= 1
    assert any(isinstance(r, FaultInjected) for r in judged.history.records)
    assert judged.report.statistics.gaps_signalled >= 1
    assert any("failover primary" in line for line in judged.trace)


# -- the command line ------------------------------------------------------------------------


def test_run_with_a_foreign_impl_in_the_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--backend", "sim", "--impl", "python", "--examples", "2", "--seed", "5",
         "--reports", str(tmp_path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "anomalies: none" in out and "rule steps/s" in out


def test_options_of_the_in_process_simulation_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", "--backend", "sim", "--impl", "python", "--workers", "2"])
    assert code == 2
    assert "--workers does not apply to --backend sim --impl" in capsys.readouterr().err


# -- node-redis: another client's connect and commands ----------------------------------------

NODE_REDIS_CLIENT = Path(__file__).resolve().parent / "node" / "node_redis_client.mjs"


@needs_node
def test_node_redis_speaks_resp3_to_the_front(node_port: Path) -> None:
    """node-redis connects with HELLO 3 (SETNAME) and CLIENT SETINFO, then runs what a
    replica runs; every data command is a step, released here lowest id first."""

    async def scenario() -> tuple[subprocess.CompletedProcess[bytes], list[str]]:
        sim = SimRedis(clock=time.time)
        front = RespFront(sim, lambda: None)
        async with trio.open_nursery() as nursery:
            port = await front.listen(nursery, "r0")

            async def release_steps() -> None:
                while True:
                    sim.run_until_quiet()
                    await trio.sleep(0.002)

            nursery.start_soon(release_steps)
            command = [str(NODE), str(NODE_REDIS_CLIENT), str(node_port), str(port)]
            with trio.fail_after(120):
                done = await trio.run_process(
                    command, capture_stdout=True, capture_stderr=True, check=False
                )
            nursery.cancel_scope.cancel()
        return done, list(sim.trace)

    with sim_time(time.time):
        done, trace = trio.run(scenario)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    said = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert said == {
        "evalsha": 1,
        "evaluated": ["nr:{s}:k", "v"],
        "hash": {"status": "running", "generationId": "g1"},
        "rawHashIsMap": True,
        "set": ["s"],
        "log": [{"id": "1-1", "message": {"e": "x"}}],
        "receivers": 1,
        "delivered": "hello",
    }
    # The subscribe resolved on its acknowledgement, a step of its own.
    assert any("SUBSCRIBE nr:{s}:events" in line for line in trace)
    assert any("ack subscribe nr:{s}:events" in line for line in trace)


# -- the outbox: Redis's order on one socket, nothing before its step ------------------------


async def _read_frames(stream: trio.SocketStream, wanted: bytes) -> bytes:
    data = b""
    with trio.fail_after(5):
        while wanted not in data:
            data += await stream.receive_some(4096)
    return data


def test_a_socket_gets_nothing_before_its_step_and_replies_keep_redis_order() -> None:
    async def scenario() -> None:
        sim = SimRedis(clock=time.time)
        front = RespFront(sim, lambda: None)
        async with trio.open_nursery() as nursery:
            port = await front.listen(nursery, "r0")
            reader = await trio.open_tcp_stream("127.0.0.1", port)
            writer = await trio.open_tcp_stream("127.0.0.1", port)
            await reader.send_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
            with trio.fail_after(5):
                await sim.wait_runnable()
            sim.run_until_quiet()  # SUBSCRIBE executes, its acknowledgement is delivered
            assert b"subscribe" in await _read_frames(reader, b"ch\r\n:1\r\n")
            await writer.send_all(b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n")
            with trio.fail_after(5):
                await sim.wait_runnable()
            sim.step(sim.runnable()[0].id)  # PUBLISH runs: the message is queued, not sent
            assert b":1\r\n" in await _read_frames(writer, b":1\r\n")
            # A PING sent now is answered after the message Redis queued before it.
            await reader.send_all(b"*1\r\n$4\r\nPING\r\n")
            with trio.move_on_after(0.3):
                early = await reader.receive_some(4096)
                pytest.fail(f"bytes before the delivery step: {early!r}")
            (delivery,) = sim.runnable()
            sim.step(delivery.id)
            frames = await _read_frames(reader, b"pong")
            assert frames.index(b"hello") < frames.index(b"pong")
            nursery.cancel_scope.cancel()

    with sim_time(time.time):
        trio.run(scenario)
