"""streamcheck's own implementation behind the replica protocol: impl/, one replica per process.

This is the agent a port writer reads next to ``docs/port-protocol.md``: it reads the
harness's lines on stdin, performs each action with the public API of
:mod:`streamcheck.impl` and writes what happened as lines on stdout. It decides nothing
about correctness: ids and payloads come from the harness, and the harness turns these
lines into the history the checker judges.

A generator performs its stream's creates, emits and ends one at a time, in the order
they were asked for (an LLM's token loop), on a task of its own per stream: a slow emit
delays the next, it never reorders or skips it. Chunks are queued without awaiting them
(``submit_chunk``: coalesced emits), so chunks asked for while earlier ones are still in
flight go out together in one batch; each chunk's result line is written when the
replica answers it, in order, and a done or error is answered after every chunk before
it. Clients and aborts run concurrently.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

import trio

import streamcheck
from streamcheck.impl import (
    AbortOutcome,
    CountingIds,
    GenerationJob,
    GenerationJobManager,
    QueuedChunk,
    ReplicaSettings,
    StreamAccessDenied,
    Subscription,
    content_text,
    open_replica,
    redis_client_from_env,
)
from streamcheck.impl.redis import Keys, RedisConnectionError, open_redis_client
from streamcheck.impl.transport import Published
from streamcheck.model import Chunk, Done, Failure, Gap, JSONValue, StreamEvent
from streamcheck.properties.protocol._messages import (
    GENERATOR_OPS,
    Action,
    Capabilities,
    Init,
    Op,
    Outcome,
    ProtocolError,
    hello_line,
    parse_action,
    parse_init,
    parse_line,
)

CAPABILITIES = Capabilities(harness_clock=True)


class HarnessClock(trio.abc.Clock):
    """trio's clock, which every timer of impl/ reads: ``time.monotonic()`` (one time
    line for every process here; trio's default clock adds a random offset per run),
    plus however far the harness moved it ahead with ``clock`` lines. A jump wakes the
    run loop (the line arrived on stdin), which then fires every deadline now past.
    Reported times stay on the machine's monotonic clock, whatever the jumps. It is the
    replica's wall clock too (what job hashes store and a silent reader's producer timeout
    compares), with the same jumps."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ProtocolError(f"clock: the harness clock never goes back ({seconds} s)")
        self.ahead_s += seconds

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.monotonic() + self.ahead_s

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.current_time()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + round(self.ahead_s * 1000)


class Lines:
    """Protocol lines to stdout, each flushed at once (a SIGKILL loses nothing said)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, kind: str, **values: Any) -> None:
        self.raw(json.dumps({"type": kind, **values}, sort_keys=True))

    def raw(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def timed(self, kind: str, **values: Any) -> None:
        self.write(kind, t=time.monotonic(), **values)

    def result(self, action: Action, outcome: Outcome, **values: Any) -> None:
        self.timed("result", action=action.id, outcome=outcome.value, **values)


def event_json(event: StreamEvent) -> dict[str, JSONValue]:
    match event:
        case Chunk():
            return {
                "kind": "chunk",
                "seq": event.seq,
                "generation": event.generation,
                "data": event.data,
            }
        case Done():
            return {
                "kind": "done",
                "seq": event.seq,
                "generation": event.generation,
                "data": event.data,
            }
        case Failure():
            return {
                "kind": "error",
                "seq": event.seq,
                "generation": event.generation,
                "message": event.message,
            }
        case Gap():
            return {
                "kind": "gap",
                "first_seq": event.first_seq,
                "last_seq": event.last_seq,
                "generation": event.generation,
                "reason": event.reason.value,
            }


@dataclass(slots=True)
class _Session:
    subscription: Subscription
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class PythonReplica:
    """One replica of impl/ performing protocol actions."""

    def __init__(self, manager: GenerationJobManager, lines: Lines, nursery: trio.Nursery) -> None:
        self._manager = manager
        self._lines = lines
        self._nursery = nursery
        #: Per stream, the generator's queue of actions (create, emit, done, error).
        self._generators: dict[str, trio.MemorySendChannel[Action]] = {}
        self._sessions: dict[str, _Session] = {}

    def perform(self, action: Action) -> None:
        """Start ``action``; it answers on stdout when it ends."""
        if action.op is Op.CREATE or action.op in GENERATOR_OPS:
            queue = self._generators.get(action.stream)
            if queue is None:
                queue, actions = trio.open_memory_channel[Action](float("inf"))
                self._generators[action.stream] = queue
                self._nursery.start_soon(self._generate, actions)
            queue.send_nowait(action)
        elif action.op is Op.ABORT:
            self._nursery.start_soon(self._abort, action)
        elif action.op is Op.DETACH:
            self._detach(action)
        else:
            self._nursery.start_soon(self._attach, action)

    async def _generate(self, actions: trio.MemoryReceiveChannel[Action]) -> None:
        job: GenerationJob | None = None
        async for action in actions:
            self._lines.timed("invoked", action=action.id)
            if action.op is Op.CREATE:
                job = await self._create(action)
            elif job is None:
                self._lines.result(action, Outcome.REFUSED, reason="absent")
            else:
                await self._emit(action, job)

    async def _create(self, action: Action) -> GenerationJob | None:
        try:
            job = await self._manager.create_job(action.stream, action.user)
        except RedisConnectionError as exc:
            self._lines.result(action, Outcome.INDETERMINATE, reason=str(exc))
            return None
        self._lines.result(action, Outcome.OK, generation=job.generation, start_seq=job.start_seq)
        self._nursery.start_soon(self._watch_abort, action, job)
        return job

    async def _watch_abort(self, action: Action, job: GenerationJob) -> None:
        await job.aborted.wait()
        reason = job.stop_reason.value if job.stop_reason is not None else None
        self._lines.timed("stopped", turn=action.turn, generation=job.generation, reason=reason)

    async def _emit(self, action: Action, job: GenerationJob) -> None:
        manager, stream = self._manager, action.stream
        if action.op is Op.EMIT:
            await manager.submit_chunk(
                stream, action.data, on_answer=lambda queued: self._chunk_answered(action, queued)
            )
            return
        try:
            if action.op is Op.DONE:
                receipt = await manager.emit_done(stream, action.data)
            else:
                receipt = await manager.emit_error(stream, action.message)
            error = action.message if action.op is Op.ERROR else None
            await manager.complete_job(stream, error=error)
        except RedisConnectionError as exc:
            self._lines.result(action, Outcome.INDETERMINATE, reason=str(exc))
            return
        if isinstance(receipt, Published):
            self._lines.result(action, Outcome.OK, seq=receipt.seq)
        elif receipt is None:
            self._lines.result(action, Outcome.REFUSED, reason="finished")
        else:
            self._lines.result(action, Outcome.INDETERMINATE, reason="not awaited")

    def _chunk_answered(self, action: Action, queued: QueuedChunk) -> None:
        try:
            receipt = queued.result()
        except BaseException as exc:  # lost connection, stopped actor, shutdown
            self._lines.result(action, Outcome.INDETERMINATE, reason=str(exc) or repr(exc))
            return
        if receipt is None:
            self._lines.result(action, Outcome.REFUSED, reason="finished")
        else:
            self._lines.result(action, Outcome.OK, seq=receipt.seq)

    async def _abort(self, action: Action) -> None:
        try:
            result = await self._manager.abort_job(action.stream, action.user)
        except StreamAccessDenied:
            self._lines.result(action, Outcome.REFUSED, reason="denied")
            return
        except RedisConnectionError as exc:
            self._lines.result(action, Outcome.INDETERMINATE, reason=str(exc))
            return
        aborted = result.outcome is AbortOutcome.ABORTED
        self._lines.result(
            action,
            Outcome.OK,
            aborted=aborted,
            reason=result.outcome.value,
            generation=result.job.generation_id if result.job is not None else None,
            seq=result.terminal_seq,
            data=result.final_event if aborted else None,
        )

    async def _attach(self, action: Action) -> None:
        snapshot: dict[str, JSONValue] = {"seqs": []}
        try:
            if action.op is Op.RESUME:
                state, subscription = await self._manager.resume(action.stream, action.user)
                snapshot = {
                    "seqs": list(state.folded_seqs),
                    "text": content_text(state.aggregated_content),
                }
            else:
                subscription = await self._manager.subscribe(action.stream, action.user)
        except StreamAccessDenied:
            self._lines.result(action, Outcome.REFUSED, reason="denied")
            return
        except RedisConnectionError as exc:
            self._lines.result(action, Outcome.INDETERMINATE, reason=str(exc))
            return
        session = _Session(subscription)
        self._sessions[action.session] = session
        self._lines.result(
            action,
            Outcome.OK,
            generation=subscription.generation,
            first_seq=subscription.start_seq,
            snapshot=snapshot,
        )
        reason = "closed"
        with session.scope:
            async for event in subscription:
                self._lines.timed("event", session=action.session, event=event_json(event))
                if isinstance(event, Done | Failure):
                    reason = "terminal"
        if session.scope.cancelled_caught:
            reason = "detached"
        self._lines.timed("closed", session=action.session, reason=reason)

    def _detach(self, action: Action) -> None:
        session = self._sessions.pop(action.session, None)
        if session is None:
            self._lines.result(action, Outcome.REFUSED, reason="absent")
            return
        session.scope.cancel()
        self._lines.result(action, Outcome.OK)
        self._nursery.start_soon(self._close, session)

    async def _close(self, session: _Session) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(RedisConnectionError):
            await session.subscription.aclose()


async def _input_lines() -> AsyncIterator[str]:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while True:
            data = await stream.receive_some()
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield line.decode()


#: The settings the harness may set (seconds); the rest keep impl's defaults.
TIMINGS = (
    "reorder_timeout_s",
    "idle_probe_s",
    "producer_timeout_s",
    "heartbeat_interval_s",
    "cleanup_interval_s",
)


def replica_settings(init: Init) -> ReplicaSettings:
    chosen: dict[str, Any] = {k: float(v) for k, v in init.settings.items() if k in TIMINGS}
    return ReplicaSettings(**chosen)


async def run_agent(out: IO[str], clock: HarnessClock) -> None:
    lines = Lines(out)
    lines.raw(hello_line("streamcheck-python", streamcheck.__version__, CAPABILITIES))
    incoming = _input_lines()
    init = parse_init(parse_line(await anext(incoming), "init"))
    if init.redis_url is None:
        raise ProtocolError("init: streamcheck's agent stores its streams in Redis: name one")
    async with (
        # STREAMCHECK_REDIS_CLIENT picks the client (coredis unless set): the harness's
        # environment reaches every agent it starts.
        open_redis_client(
            init.redis_url, cluster=init.cluster, client=redis_client_from_env(os.environ)
        ) as client,
        open_replica(
            client,
            settings=replica_settings(init),
            keys=Keys(),
            wall_clock=clock,
            ids=CountingIds(f"{init.replica}.{init.incarnation}-g"),
        ) as manager,
        trio.open_nursery() as nursery,
    ):
        replica = PythonReplica(manager, lines, nursery)
        lines.write("ready")
        async for text in incoming:
            message = parse_line(text, "harness")
            match message["type"]:
                case "start":
                    nursery.start_soon(_run_plan, replica, init.actions, float(message["at"]))
                case "do":
                    replica.perform(parse_action(message.get("action") or {}, "do.action"))
                case "clock":
                    advance = message.get("advance")
                    if not isinstance(advance, int | float) or isinstance(advance, bool):
                        raise ProtocolError(f"clock: 'advance' must be a number, not {advance!r}")
                    clock.advance(float(advance))
                case "stop":
                    break
                case other:
                    raise ProtocolError(f"unknown message type {other!r} from the harness")
        nursery.cancel_scope.cancel()


async def _run_plan(replica: PythonReplica, actions: tuple[Action, ...], start_at: float) -> None:
    # trio's clock is the machine's here: the harness sends no clock line in plan mode.
    for action in sorted(actions, key=lambda a: a.at):
        await trio.sleep_until(start_at + action.at)
        replica.perform(action)


def _private_stdout() -> IO[str]:
    """The protocol's own handle on stdout; file descriptor 1 itself then points at stderr.

    Native code in the process writes to fd 1 behind Python's back (valkey-glide's core
    logs to the console, that is stdout, by default), and any such line would break the
    protocol. Protocol lines go through a duplicate of the original stdout instead, and
    whatever else writes to fd 1 lands in the agent's stderr log."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return protocol


def main() -> int:
    try:
        clock = HarnessClock()
        trio.run(run_agent, _private_stdout(), clock, clock=clock)
    except ProtocolError as exc:
        print(f"streamcheck-python agent: {exc}", file=sys.stderr)
        return 2
    return 0
