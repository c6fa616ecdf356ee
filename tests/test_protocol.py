"""The replica protocol: its messages, transcripts as histories, and agents driven by it."""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from streamcheck.model import (
    CallRefused,
    Delivered,
    EmitKind,
    Emitted,
    GenerationStarted,
    History,
    OpOutcome,
    RefusalReason,
    SessionClosed,
    SessionEnd,
    SessionOpened,
    check,
    digest,
)
from streamcheck.properties.protocol import (
    PYTHON_AGENT,
    Action,
    AgentFailed,
    Capabilities,
    Init,
    Op,
    ProtocolError,
    ResumeBy,
    agent_command,
    clock_line,
    finish_plan,
    read_transcript,
    start_agent,
    stop_agents,
)
from streamcheck.properties.protocol._identity import PHANTOM_SEQS, PlanIdentity, marker
from streamcheck.properties.protocol._messages import (
    hello_line,
    parse_action,
    parse_hello,
    parse_init,
)
from streamcheck.properties.protocol._python_agent import HarnessClock
from streamcheck.properties.realredis._plan import chunk_payload

HELLO = json.loads(hello_line("test-impl", "1.0", Capabilities()))


def test_a_hello_round_trips_and_a_bad_one_names_its_field() -> None:
    hello = parse_hello(HELLO)
    assert (hello.name, hello.version, hello.capabilities) == ("test-impl", "1.0", Capabilities())
    with pytest.raises(ProtocolError, match="version 3 is not supported"):
        parse_hello({**HELLO, "protocol": 3})
    broken = {**HELLO, "capabilities": {**HELLO["capabilities"], "seqs": "yes"}}
    with pytest.raises(ProtocolError, match=r"hello.capabilities: field 'seqs' must be bool"):
        parse_hello(broken)
    broken = {**HELLO, "capabilities": {**HELLO["capabilities"], "resume": "telepathy"}}
    with pytest.raises(ProtocolError, match="'telepathy' is not one of seq, offset"):
        parse_hello(broken)
    with pytest.raises(ProtocolError, match="the first line must be a hello"):
        parse_hello({"type": "ready"})


def test_actions_name_what_their_op_needs() -> None:
    create = {"id": "a1", "op": "create", "stream": "s0", "user": "u", "turn": "s0.t1"}
    assert parse_action(create, "x").turn == "s0.t1"
    with pytest.raises(ProtocolError, match="a create names its 'turn'"):
        parse_action({**create, "turn": ""}, "x")
    with pytest.raises(ProtocolError, match="a subscribe names its 'session'"):
        parse_action({"id": "a2", "op": "subscribe", "stream": "s0", "user": "u"}, "x")
    with pytest.raises(ProtocolError, match=r"x.op: 'explode' is not one of create, emit"):
        parse_action({"id": "a3", "op": "explode", "stream": "s0"}, "x")
    with pytest.raises(ProtocolError, match="field 'at' must be int or float, not True"):
        parse_action({**create, "at": True}, "x")


def test_init_round_trips_with_its_plan() -> None:
    init = Init(
        replica="r0",
        redis_url="redis://127.0.0.1:1",
        cluster=False,
        mode="plan",
        actions=(
            Action(id="a1", op=Op.CREATE, stream="s0", at=0.1, user="u", turn="s0.t1"),
            Action(id="a2", op=Op.EMIT, stream="s0", at=0.2, turn="s0.t1", data={"id": 1}),
        ),
        settings={"reorder_timeout_s": 0.5},
    )
    assert parse_init(json.loads(init.to_line())) == init


def test_protocol_1_agents_are_answered_in_version_1_and_only_2_has_the_harness_clock() -> None:
    old = {**HELLO, "protocol": 1}
    old["capabilities"] = {k: v for k, v in HELLO["capabilities"].items() if k != "harness_clock"}
    assert parse_hello(old).protocol == 1 and not parse_hello(old).capabilities.harness_clock
    with pytest.raises(ProtocolError, match="'harness_clock' needs protocol 2"):
        parse_hello({**old, "capabilities": {**old["capabilities"], "harness_clock": True}})
    clocked = {**HELLO, "capabilities": {**HELLO["capabilities"], "harness_clock": True}}
    assert parse_hello(clocked).capabilities.harness_clock
    init = Init(replica="r0", redis_url="redis://x", cluster=False, mode="interactive", protocol=1)
    assert json.loads(init.to_line())["protocol"] == 1
    assert parse_init(json.loads(init.to_line())) == init
    assert json.loads(clock_line(0.65)) == {"type": "clock", "advance": 0.65}


def test_the_python_agents_clock_fires_what_a_jump_made_due() -> None:
    """trio's run loop reads the agent's clock: a sleep of an hour ends once the harness
    moves the clock an hour ahead, with no real hour passing (a clock that ignored the
    jump leaves the run asleep: the thread is then still alive after its join)."""
    clock = HarnessClock()
    woke: list[float] = []

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:

            async def sleeper() -> None:
                await trio.sleep(3600)
                woke.append(trio.current_time())

            nursery.start_soon(sleeper)
            await trio.testing.wait_all_tasks_blocked()  # the sleeper's deadline is set
            clock.advance(3600)

    runner = threading.Thread(
        target=trio.run, args=(scenario,), kwargs={"clock": clock}, daemon=True
    )
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the sleeper never woke: the jump did not reach trio"
    assert clock.ahead_s == 3600 and len(woke) == 1
    with pytest.raises(ProtocolError, match="never goes back"):
        clock.advance(-1)


def test_capabilities_say_which_promises_go_unexercised() -> None:
    assert Capabilities().not_exercised() == []
    text = Capabilities(seqs=False, resume=ResumeBy.NONE, abort=False).not_exercised()
    assert [t.split(" ")[0] for t in text] == ["native", "resume", "cross-replica"]


ACTIONS = {
    a.id: a
    for a in (
        Action(id="c", op=Op.CREATE, stream="s0", user="u", turn="s0.t1"),
        Action(id="e0", op=Op.EMIT, stream="s0", turn="s0.t1", data={"id": "s0.t1#0"}),
        Action(id="e1", op=Op.EMIT, stream="s0", turn="s0.t1", data={"id": "s0.t1#1"}),
        Action(id="d", op=Op.DONE, stream="s0", turn="s0.t1", data={"id": "s0.t1#done"}),
        Action(id="sub", op=Op.SUBSCRIBE, stream="s0", user="u", session="c1"),
    )
}


def _lines(*lines: dict[str, Any]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def _event(t: float, seq: int, data: Any, kind: str = "chunk") -> dict[str, Any]:
    event = {"kind": kind, "seq": seq, "generation": "g1", "data": data}
    return {"type": "event", "t": t, "session": "c1", "event": event}


TRANSCRIPT = _lines(
    HELLO,
    {"type": "ready"},
    {"type": "invoked", "t": 1.0, "action": "c"},
    {"type": "result", "t": 1.1, "action": "c", "outcome": "ok", "generation": "g1",
     "start_seq": 0},
    {"type": "result", "t": 1.2, "action": "sub", "outcome": "ok", "generation": "g1",
     "first_seq": 0},
    {"type": "invoked", "t": 1.3, "action": "e0"},
    {"type": "result", "t": 1.4, "action": "e0", "outcome": "ok", "seq": 0},
    _event(1.5, 0, {"id": "s0.t1#0"}),
    {"type": "invoked", "t": 1.6, "action": "e1"},
)  # fmt: skip


def test_a_transcript_becomes_the_history_the_checker_judges(tmp_path: Path) -> None:
    path = tmp_path / "r0.jsonl"
    path.write_text(TRANSCRIPT + '{"type": "result", "t": 1.7, "act')  # cut by a kill
    transcript = read_transcript(path, "r0", ACTIONS)
    assert transcript.hello is not None and transcript.hello.name == "test-impl"
    started, opened, emitted, delivered, unanswered = transcript.records
    assert isinstance(started, GenerationStarted) and started.generation == "g1"
    assert isinstance(opened, SessionOpened) and opened.owner_id == "u"
    assert isinstance(emitted, Emitted) and emitted.seq == 0
    # The harness, not the agent, digests payloads: from the action it sent.
    assert emitted.payload_digest == digest({"id": "s0.t1#0"})
    assert isinstance(delivered, Delivered) and delivered.payload_digest == emitted.payload_digest
    # e1 was invoked and never answered: it may have been published.
    assert isinstance(unanswered, Emitted)
    assert (unanswered.outcome, unanswered.seq) == (OpOutcome.INDETERMINATE, None)


def test_a_transcript_line_that_breaks_the_protocol_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r0.jsonl"
    bad = {"type": "result", "t": 1.4, "action": "nobody", "outcome": "ok"}
    path.write_text(_lines(HELLO, {"type": "ready"}, bad))
    with pytest.raises(ProtocolError, match="r0 line 3: no action has the id 'nobody'"):
        read_transcript(path, "r0", ACTIONS)
    path.write_text(_lines(HELLO, _event(1.0, 0, None, kind="telegram")))
    with pytest.raises(ProtocolError, match=r"r0 line 2\.event: unknown event kind 'telegram'"):
        read_transcript(path, "r0", ACTIONS)


def test_commands_name_streamchecks_agent_or_any_program() -> None:
    assert agent_command("python") == list(PYTHON_AGENT)
    assert agent_command("node ports/node/agent.js --fast") == [
        "node",
        "ports/node/agent.js",
        "--fast",
    ]
    with pytest.raises(ValueError, match="empty"):
        agent_command("  ")


def _init(url: str = "redis://127.0.0.1:1") -> Init:
    return Init(replica="r0", redis_url=url, cluster=False, mode="interactive")


@pytest.mark.parametrize(
    ("program", "complaint"),
    [
        ("import sys; sys.exit(3)", "said no hello (exited with 3"),
        ("print('hello there', flush=True); input()", "broke the protocol: agent r0: not JSON"),
    ],
)
async def test_an_agent_that_does_not_speak_the_protocol_is_explained(
    tmp_path: Path, program: str, complaint: str
) -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(AgentFailed, match=re.escape(complaint)) as failed:
            await start_agent(nursery, [sys.executable, "-c", program], _init(), tmp_path)
        nursery.cancel_scope.cancel()
    assert "s after it was started" in str(failed.value)


# Says hello and ready, answers a1 and a2, and then nothing until it is stopped.
ANSWERS_TWO_OF_THREE = (
    "import json, sys\n"
    f"print({json.dumps(HELLO)!r}, flush=True)\n"
    "sys.stdin.readline()\n"
    "print(json.dumps({'type': 'ready'}), flush=True)\n"
    "for action in ('a1', 'a2'):\n"
    "    line = {'type': 'result', 't': 0.0, 'action': action, 'outcome': 'ok'}\n"
    "    print(json.dumps(line), flush=True)\n"
    "sys.stdin.readline()\n"
)


async def test_a_plan_is_finished_once_every_action_is_answered_and_a_stuck_one_is_given_up(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-c", ANSWERS_TWO_OF_THREE]
    async with trio.open_nursery() as nursery:
        agent = await start_agent(nursery, command, _init(), tmp_path)
        await agent.wait_ready()
        await agent.wait_line(lambda line: line.get("action") == "a2")
        assert await finish_plan([(agent, ["a1", "a2"])], quiet_s=60.0, limit_s=60.0) is not None
        # a3 is never answered: the wait ends after quiet_s without an answer, not limit_s.
        with trio.fail_after(30):
            assert await finish_plan([(agent, ["a1", "a3"])], quiet_s=0.2, limit_s=60.0) is None
        assert not await stop_agents([agent])


async def test_streamchecks_agent_in_interactive_mode_streams_a_turn(
    tmp_path: Path, redis_url: str
) -> None:
    stream = f"proto-{uuid.uuid4().hex[:8]}"
    turn = f"{stream}.t1"
    actions = [
        Action(id="c", op=Op.CREATE, stream=stream, user="u", turn=turn),
        Action(id="sub", op=Op.SUBSCRIBE, stream=stream, user="u", session="c1"),
        *(
            Action(id=f"e{n}", op=Op.EMIT, stream=stream, turn=turn, data={"id": f"{turn}#{n}"})
            for n in range(3)
        ),
        Action(id="d", op=Op.DONE, stream=stream, turn=turn, data={"id": f"{turn}#done"}),
        Action(id="late", op=Op.EMIT, stream=stream, turn=turn, data={"id": f"{turn}#late"}),
    ]
    async with trio.open_nursery() as nursery:
        agent = await start_agent(nursery, list(PYTHON_AGENT), _init(redis_url), tmp_path)
        await agent.wait_ready()
        outcomes = [(await agent.do(action))["outcome"] for action in actions]
        await agent.wait_line(lambda line: line["type"] == "closed", timeout_s=10)
        assert await stop_agents([agent]) == []
        nursery.cancel_scope.cancel()
    assert outcomes == ["ok"] * 6 + ["refused"]  # nothing is emitted after the end
    transcript = read_transcript(agent.transcript, "r0", {a.id: a for a in actions})
    history = History()
    for record in transcript.records:
        history.append(record)
    assert check(history).ok
    delivered = [r.event for r in history.records if isinstance(r, Delivered)]
    assert [getattr(e, "data", None) for e in delivered] == [
        {"id": f"{turn}#0"},
        {"id": f"{turn}#1"},
        {"id": f"{turn}#2"},
        {"id": f"{turn}#done"},
    ]
    emits = [r for r in history.records if isinstance(r, Emitted)]
    assert [(e.kind, e.outcome) for e in emits][-1] == (EmitKind.CHUNK, OpOutcome.FAIL)
    closed = [r for r in history.records if isinstance(r, SessionClosed)]
    assert [c.reason for c in closed] == [SessionEnd.TERMINAL]
    refused = [r for r in history.records if isinstance(r, CallRefused)]
    assert [(r.call, r.reason) for r in refused] == [("emit", RefusalReason.FINISHED)]


def _planned_turn() -> dict[str, Action]:
    turn = "s0.t1"
    actions = [Action(id="c", op=Op.CREATE, stream="s0", at=0.0, user="u", turn=turn)]
    actions += [
        Action(id=f"e{n}", op=Op.EMIT, stream="s0", at=0.1 * (n + 1), turn=turn,
               data=chunk_payload(turn, n))
        for n in range(3)
    ]  # fmt: skip
    actions.append(Action(id="d", op=Op.DONE, stream="s0", at=1.0, turn=turn, data={"id": "x"}))
    return {a.id: a for a in actions}


def test_without_seqs_text_is_split_back_into_the_planned_chunks() -> None:
    identity = PlanIdentity(_planned_turn())
    assert [identity.emit_seq(a) for a in _planned_turn().values() if a.op is not Op.CREATE] == [
        0,
        1,
        2,
        3,
    ]
    text = marker("s0.t1", 1) + marker("s0.t1", 2) + "stray" + marker("s0.t2", 0)
    events = identity.events({"kind": "text", "text": text}, "s0.t1", "x")
    assert [(e.seq, e.generation) for e in events[:2]] == [(1, "s0.t1"), (2, "s0.t1")]
    # The payload digests match what the harness sent, so nothing looks altered ...
    assert [getattr(e, "data", None) for e in events[:2]] == [
        chunk_payload("s0.t1", 1),
        chunk_payload("s0.t1", 2),
    ]
    # ... and what it never sent gets a seq of its own: the checker reports it.
    assert all(e.seq >= PHANTOM_SEQS for e in events[2:]) and len(events) == 4


def test_without_seqs_an_altered_payload_is_a_phantom_and_the_end_follows_the_chunks() -> None:
    identity = PlanIdentity(_planned_turn())
    altered = {**chunk_payload("s0.t1", 0), "text": "edited"}  # type: ignore[dict-item]
    (chunk,) = identity.events({"kind": "chunk", "data": altered}, "s0.t1", "x")
    assert chunk.seq >= PHANTOM_SEQS
    (done,) = identity.events({"kind": "done", "data": {"final": 1}}, "s0.t1", "x")
    assert (done.seq, done.generation) == (3, "s0.t1")
    snapshot = {"text": marker("s0.t1", 0) + marker("s0.t1", 1)}
    assert identity.snapshot_seqs(snapshot, "x") == [0, 1]
    with pytest.raises(ProtocolError, match="not 'gap'"):
        identity.events({"kind": "gap"}, "s0.t1", "x")
