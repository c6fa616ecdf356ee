"""A simulated world of foreign replicas: agent processes over the RESP front.

Each replica is an agent process (any language, ``docs/port-protocol.md``) in interactive
mode, connected to its own port of a :class:`~.RespFront` over one
:class:`~streamcheck.properties.sim.SimRedis`. A decision either asks an agent to do
something (a ``do`` line: create, emit, done, error, abort, subscribe, resume, detach) or
acts on the simulated Redis (execute the k-th pending command or delivery, drop a message,
cut a connection, release everything), and then waits until the world is **quiet**:
agents are not under our scheduler, so a decision is complete when no byte moved on any
socket and no agent wrote a line for ``quiet_s`` (and the front has nothing left to
write). What arrives after that window is counted (``late_activity``): it is what the
window missed.

Time: the simulated Redis reads the real clock, and the replicas run their own timers
(reorder timeout, idle probe) with the short settings given in their init. A ``wait``
decision moves time past a setting's length (and a margin): with ``clock`` lines when
every agent's hello declared the harness clock (protocol 2: its timers run on a clock the
harness moves ahead, so the jump costs no real time), otherwise by letting that much real
time pass. Heartbeats, cleanup and the producer timeout are set long enough never to
fire in an example.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio

from streamcheck.model import (
    CheckReport,
    FaultInjected,
    FaultKind,
    Healed,
    History,
    JSONValue,
    Record,
    WritesLost,
    check,
)
from streamcheck.properties.protocol import (
    Action,
    Agent,
    AgentFailed,
    Init,
    Op,
    clock_line,
    read_transcript,
)
from streamcheck.properties.protocol._messages import ProtocolError
from streamcheck.properties.realredis._merge import merge_histories
from streamcheck.properties.realredis._plan import chunk_payload, owner_of
from streamcheck.properties.sim._redis import SimRedis
from streamcheck.properties.sim.resp._front import RespFront
from streamcheck.properties.sim.resp._host import ActiveAgent, host

T = TypeVar("T")

__all__ = ["FOREIGN_SETTINGS", "ForeignWorld", "WorldFailed", "WorldTimings"]

#: The replicas' settings: short real timers the ``wait`` decision can pass, and the
#: periodic work (heartbeats, cleanup, producer timeout) out of an example's reach.
FOREIGN_SETTINGS: Final = {
    "reorder_timeout_s": 0.25,
    "idle_probe_s": 0.6,
    "producer_timeout_s": 600.0,
    "heartbeat_interval_s": 300.0,
    "cleanup_interval_s": 600.0,
}
#: How long an agent may take to exit once told to stop (the protocol's 10 s).
STOP_GRACE_S: Final = 10.0
#: Real seconds past a timer's length that a ``wait`` sleeps.
WAIT_MARGIN_S: Final = 0.05
#: Silence that counts as quiet when every agent process sleeps (see ForeignWorld.quiet),
#: and how often the quiet wait looks.
MIN_QUIET_S: Final = 0.003
POLL_S: Final = 0.001
#: A decision that never gets quiet (an agent that keeps talking) ends after this.
QUIET_LIMIT_S: Final = 5.0


class WorldFailed(RuntimeError):
    """An agent died, broke the protocol or never got ready."""


@dataclass(slots=True)
class WorldTimings:
    decisions: int = 0
    #: Seconds spent waiting for quiet windows, over every decision.
    quiet_s: float = 0.0
    #: Seconds spent in ``wait`` decisions (real time let pass on purpose).
    waited_s: float = 0.0
    #: Seconds the agents' harness clocks were moved ahead instead (no real time).
    advanced_s: float = 0.0
    #: Bytes or lines that arrived between decisions, after a window had closed.
    late_activity: int = 0
    #: Quiet waits that ended before ``quiet_s`` of silence (every agent asleep).
    early_quiet: int = 0
    #: Decisions that were not quiet within QUIET_LIMIT_S.
    never_quiet: int = 0
    start_s: float = 0.0


@dataclass(slots=True)
class _Turn:
    name: str
    producer: int
    chunks: int = 0
    live: bool = True


@dataclass(slots=True)
class _Session:
    name: str
    replica: int
    stream: str


@dataclass
class ForeignWorld:
    """One example's world; every method runs in its trio thread."""

    commands: list[list[str]]
    quiet_s: float = 0.02
    #: After a cut, the extra real time a client needs to reconnect (ioredis waits
    #: 20 ms, coredis at once).
    reconnect_grace_s: float = 0.1
    sim: SimRedis = field(init=False)
    front: RespFront = field(init=False)
    agents: list[ActiveAgent] = field(default_factory=list)
    actions: dict[str, Action] = field(default_factory=dict)
    timings: WorldTimings = field(default_factory=WorldTimings)
    _turns: dict[str, _Turn] = field(default_factory=dict)
    _turn_count: dict[str, int] = field(default_factory=dict)
    _sessions: list[_Session] = field(default_factory=list)
    _last_activity: float = 0.0
    _deciding: bool = False
    _ids: int = 0
    _session_count: int = 0
    #: What the world did that the agents cannot report (failovers, the writes they
    #: lost), merged into the history by time.
    _faults: list[Record] = field(default_factory=list)

    # -- set-up -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        # A replica behind the primary, so that a failover may lose acknowledged writes.
        self.sim = SimRedis(clock=time.time, with_replica=True)
        self.front = RespFront(self.sim, self._activity)
        self.timings.start_s = trio.current_time()
        for index, command in enumerate(self.commands):
            replica = f"r{index}"
            port = await self.front.listen(nursery, replica)
            try:
                agent = await host.agent(command)
            except AgentFailed as exc:
                raise WorldFailed(str(exc)) from None
            agent.name = replica
            agent.on_line = self._activity
            assert agent.hello is not None  # host.agent waited for it
            init = Init(
                replica=replica,
                redis_url=f"redis://127.0.0.1:{port}",
                cluster=False,
                mode="interactive",
                settings=FOREIGN_SETTINGS,
                protocol=agent.hello.protocol,
            )
            await agent.send(init.to_line())
            self.agents.append(agent)
        self._deciding = True
        with trio.move_on_after(60):
            async with trio.open_nursery() as ready:
                for agent in self.agents:
                    ready.start_soon(self._ready, agent)
        # Connecting is not part of the example: let every handshake finish.
        await self.settle()
        self._deciding = False
        self.timings = WorldTimings(start_s=self.timings.start_s)

    async def _ready(self, agent: Agent) -> None:
        # Connecting needs the handshake's steps: release them while the agent starts.
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump_while_starting, scope)
                try:
                    await agent.wait_ready()
                except AgentFailed as exc:
                    raise WorldFailed(str(exc)) from None
                scope.cancel()

    async def _pump_while_starting(self, scope: trio.CancelScope) -> None:
        while True:
            self.sim.run_until_quiet()
            await trio.sleep(0.005)

    async def stop(self) -> list[str]:
        from streamcheck.properties.protocol import stop_agents

        self.front.close_all()
        return await stop_agents(list(self.agents), grace_s=STOP_GRACE_S)

    # -- quiet ----------------------------------------------------------------------------

    def _activity(self) -> None:
        self._last_activity = trio.current_time()
        if not self._deciding:
            self.timings.late_activity += 1

    async def quiet(self, extra_s: float = 0.0) -> None:
        """Return once the world is quiet: nothing moved on a socket or a pipe for
        MIN_QUIET_S, the front has nothing left to write, and at two polls in a row every
        agent process was asleep (waiting on its sockets or timers, per the kernel) and
        had used no CPU time in between. An agent that is running, or runnable but
        waiting for a core on a loaded machine, keeps the decision open. Where /proc
        cannot be read, ``quiet_s`` of silence is the rule instead."""
        started = trio.current_time()
        previous: list[tuple[bytes, int]] | None = None
        while True:
            now = trio.current_time()
            since = now - self._last_activity
            if self.front.writing == 0 and now - started >= extra_s and since >= MIN_QUIET_S:
                states = self._agent_states()
                if states is None:
                    if since >= self.quiet_s:
                        break
                elif all(state == b"S" for state, _ in states) and states == previous:
                    self.timings.early_quiet += since < self.quiet_s
                    break
                previous = states
            else:
                previous = None
            if now - started > QUIET_LIMIT_S:
                self.timings.never_quiet += 1
                break
            await trio.sleep(POLL_S)
        self.timings.quiet_s += trio.current_time() - started
        self._check_agents()

    def _agent_states(self) -> list[tuple[bytes, int]] | None:
        """Each agent's main thread state and CPU ticks, from /proc (Linux); None where
        that cannot be read."""
        states = []
        for agent in self.agents:
            try:
                with open(f"/proc/{agent.process.pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                return None
            # After the command name: state, then utime and stime at offsets 11 and 12.
            states.append((fields[0], int(fields[11]) + int(fields[12])))
        return states

    def _check_agents(self) -> None:
        for agent in self.agents:
            if agent.process.returncode is not None:
                raise WorldFailed(agent.explain("exited during the example"))
            if agent._problem is not None:
                raise WorldFailed(agent.explain(f"broke the protocol: {agent._problem}"))

    # -- decisions --------------------------------------------------------------------------

    async def attended(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn`` as the harness's turn: activity meanwhile is expected, activity
        between two such turns arrived after a quiet window had closed (late)."""
        self._deciding = True
        try:
            return await fn(*args)
        finally:
            self._deciding = False

    async def apply(self, name: str, args: dict[str, Any]) -> bool:
        """Make one decision and wait for quiet; False if it had nothing to act on."""
        self.timings.decisions += 1
        return await self._apply(name, args)

    async def _apply(self, name: str, args: dict[str, Any]) -> bool:
        match name:
            case "create" | "emit" | "finish" | "abort" | "subscribe" | "resume" | "detach":
                chosen = self._action(name, args)
                if chosen is None:
                    return False
                action, replica = chosen
                self.actions[action.id] = action
                self._activity()
                await self.agents[replica].send(
                    json.dumps({"type": "do", "action": action.to_json()})
                )
                await self.quiet()
                return True
            case "lossy_emit":
                return await self._lossy_emit(str(args["stream"]), int(args["k"]))
            case "step" | "deliver" | "drop":
                return await self._item(name, int(args["k"]))
            case "disconnect":
                names = sorted(self.sim.connections())
                if not names:
                    return False
                self.sim.disconnect(names[int(args["k"]) % len(names)])
                self._activity()
                await self.quiet(self.reconnect_grace_s)
                return True
            case "failover":
                await self.failover()
                return True
            case "failover_after_emit":
                return await self._failover_after_emit(str(args["stream"]))
            case "settle":
                await self.settle()
                return True
            case "pct":
                await self.pct(int(args["seed"]), int(args["depth"]))
                return True
            case "wait":
                await self.pass_time(FOREIGN_SETTINGS[f"{args['timer']}_s"] + WAIT_MARGIN_S)
                await self.quiet()
                return True
        raise ValueError(f"unknown decision {name!r}")

    @property
    def failed_over(self) -> bool:
        return any(
            isinstance(f, FaultInjected) and f.fault is FaultKind.FAILOVER for f in self._faults
        )

    @property
    def harness_clock(self) -> bool:
        """Every agent takes its timers' clock from the harness (its hello said so)."""
        return all(a.hello is not None and a.hello.capabilities.harness_clock for a in self.agents)

    async def pass_time(self, seconds: float) -> None:
        """Time passes for the replicas' timers: their clocks jump ``seconds`` ahead, or,
        unless every agent takes its clock from the harness, that much real time passes
        (a clock line to some agents only would leave the others' timers behind)."""
        if self.harness_clock:
            self.timings.advanced_s += seconds
            self._activity()
            for agent in self.agents:
                await agent.send(clock_line(seconds))
        else:
            self.timings.waited_s += seconds
            await trio.sleep(seconds)

    def _choices(self, name: str) -> list[int]:
        """The items a step, deliver or drop may pick, in an order that does not depend
        on which socket's bytes arrived first: by what they are, then by id."""
        if name == "drop":
            items = [
                item
                for item in self.sim.pending()
                if item.kind == "delivery" and not item.description.startswith("ack ")
            ]
        else:
            items = [
                item for item in self.sim.runnable() if name == "step" or item.kind == "delivery"
            ]
        items.sort(key=lambda item: (item.kind, item.description, item.connection, item.id))
        return [item.id for item in items]

    async def _item(self, name: str, k: int) -> bool:
        choices = self._choices(name)
        if not choices:
            return False
        item = choices[k % len(choices)]
        if name == "drop":
            self.sim.drop(item)
        else:
            self.sim.step(item)
            self._activity()
        await self.quiet()
        return True

    async def _lossy_emit(self, stream: str, k: int, limit: int = 20) -> bool:
        """The generator emits; pending commands run (lowest id first, one per quiet
        window) until its publish has queued messages; the k-th of those (by connection)
        is lost. A message lost in flight is the pub/sub loss the design repairs from the
        chunk log; reaching it one step at a time is rare."""
        before = {item.id for item in self.sim.pending() if item.kind == "delivery"}
        if not await self._apply("emit", {"stream": stream}):
            return False
        for _ in range(limit):
            queued = [
                item
                for item in self.sim.pending()
                if item.kind == "delivery"
                and item.id not in before
                and not item.description.startswith("ack ")
            ]
            if queued:
                queued.sort(key=lambda item: (item.connection, item.id))
                self.sim.drop(queued[k % len(queued)].id)
                return True
            commands = [item for item in self.sim.runnable() if item.kind == "command"]
            if not commands:
                return True
            self.sim.step(commands[0].id)
            self._activity()
            await self.quiet()
        return True

    async def failover(self) -> None:
        """The primary fails over to its replica: writes not yet replicated are lost,
        scripts forgotten, every connection dropped (the simulated Redis for impl/ does
        the same, :meth:`SimRedis.failover`). The history says so, as the in-process
        world's does, so that the checker accepts what lost writes excuse (a gap typed
        ``writes_lost`` or ``possibly_lost``, a turn ended twice) and nothing else."""
        lost_before = self.sim.statistics().writes_lost
        self.sim.failover()
        at = time.monotonic()
        self._faults.append(FaultInjected(time=at, fault=FaultKind.FAILOVER))
        lost = self.sim.statistics().writes_lost - lost_before
        if lost:
            self._faults.append(WritesLost(time=at, writes=lost))
        self._activity()
        await self.quiet(self.reconnect_grace_s)

    async def _failover_after_emit(self, stream: str, limit: int = 20) -> bool:
        """The generator emits; pending commands run (lowest id first, one per quiet
        window) until none is left, with nothing replicated; then the primary fails
        over, so the chunk acknowledged to its generator is lost with its counter
        increment and log entry."""
        if not await self._apply("emit", {"stream": stream}):
            return False
        for _ in range(limit):
            commands = [item for item in self.sim.runnable() if item.kind == "command"]
            if not commands:
                break
            self.sim.step(commands[0].id)
            self._activity()
            await self.quiet()
        await self.failover()
        return True

    async def settle(self, limit: int = 2000) -> int:
        """Release every pending step, lowest id first, then wait for quiet; again until
        nothing is pending once the world is quiet."""
        steps = 0
        while steps < limit:
            made = self.sim.run_until_quiet(limit - steps)
            steps += made
            if made:
                self._activity()
            await self.quiet()
            if not made and not self.sim.runnable():
                return steps
        return steps

    async def pct(self, seed: int, depth: int, limit: int = 2000) -> int:
        """Release everything pending in a PCT order (Burckhardt et al.): each connection
        gets a random priority from ``seed`` the first time it has a step; the highest
        runs, one step per quiet window; at ``depth - 1`` drawn steps the connection about
        to run drops below every other. Priorities are drawn in the order of the
        connections' names (which say replica and role), so a seed means the same
        priorities in every replay."""
        rng = random.Random(seed)
        priority: dict[str, float] = {}
        change_at = sorted(rng.sample(range(1, 40), max(0, depth - 1)))
        steps = 0
        while steps < limit:
            runnable = self.sim.runnable()
            if not runnable:
                await self.quiet()
                if not self.sim.runnable():
                    return steps
                continue
            for item in sorted(runnable, key=lambda item: item.connection):
                if item.connection not in priority:
                    priority[item.connection] = rng.random()
            best = max(runnable, key=lambda item: (priority[item.connection], -item.id))
            steps += 1
            if change_at and steps == change_at[0]:
                change_at.pop(0)
                priority[best.connection] = min(priority.values()) - 1.0
                continue
            self.sim.step(best.id)
            if best.kind != "replication":  # applied to the replica: no agent sees it
                self._activity()
                await self.quiet()
        return steps

    # -- actions ------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._ids += 1
        return f"a{self._ids}"

    def _action(self, name: str, args: dict[str, Any]) -> tuple[Action, int] | None:
        """The action a decision asks for and the replica that performs it (None when
        there is nothing to act on: an emit with no turn in progress, say)."""
        stream = str(args.get("stream", ""))
        replica = int(args.get("replica", 0)) % len(self.agents)
        user = owner_of(stream)
        turn = self._turns.get(stream)
        live = turn is not None and turn.live
        if name == "create":
            if live:
                return None
            number = self._turn_count.get(stream, 0) + 1
            self._turn_count[stream] = number
            turn = _Turn(f"{stream}.t{number}", replica)
            self._turns[stream] = turn
            return Action(self._next_id(), Op.CREATE, stream, user=user, turn=turn.name), replica
        if name in ("emit", "finish"):
            if turn is None or not live:
                return None
            if name == "emit":
                n = turn.chunks
                turn.chunks += 1
                data = chunk_payload(turn.name, n)
                return Action(
                    self._next_id(), Op.EMIT, stream, turn=turn.name, data=data
                ), turn.producer
            turn.live = False
            if args.get("error"):
                message = f"{turn.name}#error"
                action = Action(self._next_id(), Op.ERROR, stream, turn=turn.name, message=message)
            else:
                done: JSONValue = {"id": f"{turn.name}#done"}
                action = Action(self._next_id(), Op.DONE, stream, turn=turn.name, data=done)
            return action, turn.producer
        if name == "abort":
            if turn is None:
                return None
            turn.live = False
            return Action(self._next_id(), Op.ABORT, stream, user=user), replica
        if name in ("subscribe", "resume"):
            if turn is None:
                return None
            self._session_count += 1
            session = f"c{self._session_count}"
            self._sessions.append(_Session(session, replica, stream))
            op = Op.SUBSCRIBE if name == "subscribe" else Op.RESUME
            return Action(self._next_id(), op, stream, user=user, session=session), replica
        # detach
        if not self._sessions:
            return None
        gone = self._sessions.pop(int(args["which"]) % len(self._sessions))
        return Action(self._next_id(), Op.DETACH, gone.stream, session=gone.name), gone.replica

    # -- judging ----------------------------------------------------------------------------

    def live_turns(self) -> list[str]:
        return sorted(s for s, turn in self._turns.items() if turn.live)

    def open_sessions(self) -> int:
        """Sessions the agents opened and have not closed (from their lines so far)."""
        opened: set[str] = set()
        closed: set[str] = set()
        for agent in self.agents:
            for raw in agent._said:
                if raw["type"] == "result" and raw.get("outcome") == "ok":
                    action = self.actions.get(str(raw.get("action")))
                    if action is not None and action.op in (Op.SUBSCRIBE, Op.RESUME):
                        opened.add(action.session)
                elif raw["type"] == "closed":
                    closed.add(str(raw.get("session")))
        return len(opened - closed)

    def lines_said(self) -> int:
        return sum(len(agent._said) for agent in self.agents)

    def judge(self, *, healed: bool) -> tuple[CheckReport, History]:
        transcripts = []
        # After a failover a refusal ("absent", "finished") proves nothing: the turn may
        # be among the lost writes.
        forgets_after = min((f.time for f in self._faults), default=math.inf)
        for agent in self.agents:
            try:
                transcripts.append(
                    read_transcript(
                        agent.transcript,
                        agent.name,
                        self.actions,
                        storage_forgets_after=forgets_after,
                    )
                )
            except ProtocolError as exc:
                raise WorldFailed(f"agent {agent.name} broke the protocol: {exc}") from None
        errors = [f"agent {t.replica}: {e}" for t in transcripts for e in t.agent_errors]
        if errors:
            raise WorldFailed("; ".join(errors))
        history = merge_histories([t.records for t in transcripts] + [self._faults])
        if healed:
            history.append(Healed(time=time.monotonic()))
        return check(history), history
