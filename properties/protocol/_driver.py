"""Starting agents and speaking to them: the harness's side of the replica protocol.

Each agent's stdout is copied line by line into its transcript file as it arrives, so a
killed agent's last words are kept; its stderr goes to a file whose tail explains a
failure. Every wait is bounded, and a failed wait says which agent, how long it waited
and what the agent wrote on stderr.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from streamcheck.properties.protocol._messages import (
    STOP_LINE,
    Action,
    Hello,
    Init,
    ProtocolError,
    do_line,
    parse_hello,
    parse_line,
    start_line,
)

#: The command that runs streamcheck's own implementation as an agent.
PYTHON_AGENT: Final = (sys.executable, "-m", "streamcheck.properties.protocol.python_agent")
#: How long an agent may take to say hello, and then to be ready (import, connect). Long,
#: because a loaded two-core machine can take seconds to start a Python or Node process;
#: the plan starts only when every agent is ready, so a slow start costs no events.
HELLO_TIMEOUT_S: Final = 60.0
READY_TIMEOUT_S: Final = 60.0


class AgentFailed(RuntimeError):
    """An agent did not start, broke the protocol or died."""


def agent_command(impl: str) -> list[str]:
    """``python`` (streamcheck's own agent) or a shell-style command line."""
    if impl == "python":
        return list(PYTHON_AGENT)
    command = shlex.split(impl)
    if not command:
        raise ValueError("the implementation's command is empty")
    return command


@dataclass(slots=True)
class Agent:
    name: str
    process: trio.Process
    transcript: Path
    stderr: Path
    started_at: float
    hello: Hello | None = None
    _said_hello: trio.Event = field(default_factory=trio.Event)
    _ready: trio.Event = field(default_factory=trio.Event)
    _lines_seen: int = 0
    _problem: str | None = None
    _results: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When (trio's clock) each action's result was read.
    _answered_at: dict[str, float] = field(default_factory=dict)
    #: Set and replaced at each result, and set for good when stdout closes.
    _answer_came: trio.Event = field(default_factory=trio.Event)
    _stdout_closed: bool = False
    _waiting: dict[str, trio.Event] = field(default_factory=dict)
    #: Every line after ready, parsed (a run's agent writes thousands at most).
    _said: list[dict[str, Any]] = field(default_factory=list)
    _watchers: list[tuple[Callable[[dict[str, Any]], bool], trio.Event]] = field(
        default_factory=list
    )

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = self.stderr.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no stderr)"
        return " | ".join(text) or "(stderr empty)"

    def explain(self, what: str) -> str:
        waited = trio.current_time() - self.started_at
        code = self.process.returncode
        state = "still running" if code is None else f"exited with {code}"
        return (
            f"agent {self.name} {what} ({state}, {waited:.1f} s after it was started, "
            f"{self._lines_seen} lines written); stderr: {self.stderr_tail()}"
        )

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all((line + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise AgentFailed(self.explain("closed its stdin")) from None

    async def pump(self) -> None:
        """Copy stdout into the transcript; notice hello and ready."""
        assert self.process.stdout is not None
        buffer = b""
        with self.transcript.open("wb") as out:
            async for data in self.process.stdout:
                out.write(data)
                out.flush()
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._line(line.decode(errors="replace"))
        # stdout closed: the agent is exiting; its status explains a missing hello.
        self._stdout_closed = True
        self._answer_came.set()
        with trio.move_on_after(5):
            await self.process.wait()
        self._said_hello.set()
        self._ready.set()

    def _line(self, line: str) -> None:
        self._lines_seen += 1
        if not line.strip():
            return
        try:
            raw = parse_line(line, f"agent {self.name}")
            if self._ready.is_set():
                self._answer(raw)
            elif not self._said_hello.is_set():
                self.hello = parse_hello(raw)
                self._said_hello.set()
            elif raw["type"] == "ready":
                self._ready.set()
        except ProtocolError as exc:
            self._problem = str(exc)
            self._said_hello.set()
            self._ready.set()

    def _answer(self, raw: dict[str, Any]) -> None:
        self._said.append(raw)
        for wanted, seen in list(self._watchers):
            if wanted(raw):
                self._watchers.remove((wanted, seen))
                seen.set()
        if raw["type"] == "result" and isinstance(raw.get("action"), str):
            self._results[raw["action"]] = raw
            self._answered_at[raw["action"]] = trio.current_time()
            self._answer_came.set()
            self._answer_came = trio.Event()
            waiting = self._waiting.pop(raw["action"], None)
            if waiting is not None:
                waiting.set()

    async def do(self, action: Action, timeout_s: float = 30.0) -> dict[str, Any]:
        """Interactive mode: perform ``action`` now; its result line, once it came."""
        answered = self._waiting.setdefault(action.id, trio.Event())
        await self.send(do_line(action))
        with trio.move_on_after(timeout_s):
            await answered.wait()
        if action.id not in self._results:
            raise AgentFailed(self.explain(f"did not answer action {action.id} in {timeout_s} s"))
        return self._results[action.id]

    async def wait_line(
        self, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
    ) -> None:
        """Wait for a line (after ready) that ``wanted`` accepts, or find it said."""
        if any(wanted(raw) for raw in self._said):
            return
        seen = trio.Event()
        self._watchers.append((wanted, seen))
        with trio.move_on_after(timeout_s):
            await seen.wait()
        if not seen.is_set():
            raise AgentFailed(self.explain(f"wrote no awaited line in {timeout_s} s"))

    def unanswered(self, action_ids: Iterable[str]) -> list[str]:
        return [action for action in action_ids if action not in self._results]

    def last_answer_at(self, action_ids: Iterable[str]) -> float:
        """When the latest result among ``action_ids`` came (trio's clock; -inf if none)."""
        return max((self._answered_at.get(a, -math.inf) for a in action_ids), default=-math.inf)

    @property
    def stdout_closed(self) -> bool:
        return self._stdout_closed

    async def next_answer(self) -> None:
        """Until the agent's next result line, or at once if its stdout has closed."""
        if not self._stdout_closed:
            await self._answer_came.wait()

    async def wait_hello(self) -> Hello:
        with trio.move_on_after(HELLO_TIMEOUT_S):
            await self._said_hello.wait()
        if self._problem is not None:
            raise AgentFailed(self.explain(f"broke the protocol: {self._problem}"))
        if self.hello is None:
            raise AgentFailed(self.explain("said no hello"))
        return self.hello

    async def wait_ready(self) -> None:
        with trio.move_on_after(READY_TIMEOUT_S):
            await self._ready.wait()
        if self._problem is not None:
            raise AgentFailed(self.explain(f"broke the protocol: {self._problem}"))
        if not self._ready.is_set() or self.process.returncode is not None:
            raise AgentFailed(self.explain("was not ready"))


async def spawn_agent(
    nursery: trio.Nursery, command: list[str], replica: str, workdir: Path
) -> Agent:
    """Start one agent and read its hello (the harness picks the plan, and starts an
    implementation's own server, from what the hellos say, before any init)."""
    transcript = workdir / f"{replica}.jsonl"
    stderr = workdir / f"{replica}.stderr"
    with stderr.open("wb") as err:
        try:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        except OSError as exc:
            raise AgentFailed(f"cannot start agent {replica} ({command[0]}): {exc}") from None
    agent = Agent(replica, process, transcript, stderr, started_at=trio.current_time())
    nursery.start_soon(agent.pump)
    await agent.wait_hello()
    return agent


async def start_agent(
    nursery: trio.Nursery, command: list[str], init: Init, workdir: Path
) -> Agent:
    """Start one agent, read its hello and send it ``init``."""
    agent = await spawn_agent(nursery, command, init.replica, workdir)
    await agent.send(init.to_line())
    return agent


async def read_hello(command: list[str], workdir: Path) -> Hello:
    """What an implementation says about itself: its agent's hello (then it is killed)."""
    async with trio.open_nursery() as nursery:
        agent = await spawn_agent(nursery, command, "probe", workdir)
        agent.process.kill()
        await agent.process.wait()
        assert agent.hello is not None
        return agent.hello


async def start_plan(agents: list[Agent], lead_s: float = 0.2) -> float:
    """Wait until every agent is ready, then start every plan at one instant, ``lead_s``
    ahead so each agent reads it before its first action. Returns t=0 (monotonic)."""
    for agent in agents:
        await agent.wait_ready()
    at = trio.current_time() + lead_s
    for agent in agents:
        await agent.send(start_line(_monotonic(at)))
    return _monotonic(at)


async def finish_plan(
    planned: Sequence[tuple[Agent, Sequence[str]]], *, quiet_s: float, limit_s: float
) -> float | None:
    """Wait until every agent has answered each of its planned actions (the action ids
    paired with it); returns when the last answer came (monotonic). An agent whose stdout
    has closed answers nothing more and is not waited for.

    Gives up, returning ``None``, once no planned action has been answered for ``quiet_s``
    (a call stuck for good, which waiting longer would not change) or ``limit_s`` after
    the call (an implementation still crawling through its plan)."""

    def waiting() -> list[Agent]:
        return [a for a, ids in planned if a.unanswered(ids) and not a.stdout_closed]

    def last_answer_at() -> float:
        return max((agent.last_answer_at(ids) for agent, ids in planned), default=-math.inf)

    with trio.move_on_after(limit_s):
        while agents := waiting():
            quiet_until = last_answer_at() + quiet_s
            if trio.current_time() >= quiet_until:
                return None
            with trio.move_on_at(quiet_until):
                async with trio.open_nursery() as nursery:
                    for agent in agents:
                        nursery.start_soon(_first_answer, agent, nursery.cancel_scope)
        return _monotonic(last_answer_at())
    return None


async def _first_answer(agent: Agent, race: trio.CancelScope) -> None:
    await agent.next_answer()
    race.cancel()


async def stop_agents(agents: list[Agent], grace_s: float = 10.0) -> list[str]:
    """Ask every agent still running to stop; kill what does not exit within
    ``grace_s``. Returns the failures (agents that exited badly or had to be killed)."""
    for agent in agents:
        if agent.process.returncode is None:
            with contextlib.suppress(AgentFailed):
                await agent.send(STOP_LINE)
    failures: list[str] = []
    with trio.move_on_after(grace_s):
        for agent in agents:
            await agent.process.wait()
    for agent in agents:
        if agent.process.returncode is None:
            agent.process.kill()
            await agent.process.wait()
            failures.append(agent.explain("did not stop when asked"))
    return failures


def _monotonic(trio_time: float) -> float:
    """trio's clock is ``time.monotonic()`` plus an offset (trio adds one per run)."""
    return time.monotonic() + (trio_time - trio.current_time())
