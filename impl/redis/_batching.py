"""Coalesce concurrent script calls into one pipelined round trip.

The problem: every emit is one Lua script call, and with coredis under trio one awaited
command costs several task switches and a few hundred microseconds of Python, so
streams emitting side by side are bound by the client, not by Redis (raw coredis
PUBLISH from 16 awaited loops reaches about 5,000 commands/s on a 2-core machine; the
same commands pipelined 16 at a time reach about 30,000). The batcher lets every call
that arrives while a round trip is in flight ride together in the next one; a call
that finds nothing in flight goes out at once from its caller's own task.

Nothing is weakened: each script still runs atomically on its own, in the order its
callers reached the batcher; callers only ever have one call of theirs in flight, so
no caller's order changes. A batch that fails as a whole (the connection dropped) fails
every call in it, each with the same "maybe done" meaning a single failed call has.

The batcher is sans-IO about Redis: it is given a ``send`` function that runs a list
of calls and returns one outcome per call (a value or the exception for that call).

Example::

    batcher = ScriptBatcher(send_pipeline)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        reply = await batcher.call(ScriptCall(PUBLISH, keys, args))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from streamcheck.impl.redis._protocol import LuaScript, RedisConnectionError, ScriptArg

#: Most calls one round trip carries; more wait for the next one. Large enough that
#: hundreds of streams share a handful of round trips, small enough that one reply
#: stays well under a megabyte.
MAX_BATCH = 512

_CLOSED_IN_FLIGHT = "the Redis client closed with the call in flight"


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: LuaScript
    keys: Sequence[str]
    args: Sequence[ScriptArg]


#: One outcome per call: the script's reply, or the exception that call raised.
Outcome = object | BaseException
SendBatch = Callable[[Sequence[ScriptCall]], Awaitable[Sequence[Outcome]]]


@dataclass(slots=True)
class _Pending:
    call: ScriptCall
    done: trio.Event = field(default_factory=trio.Event)
    outcome: Outcome = None
    #: Set by a caller cancelled before its call was sent: the call is then skipped.
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class BatcherStats:
    calls: int
    round_trips: int
    largest_batch: int


class ScriptBatcher:
    """Runs script calls through ``send``, as many per round trip as are waiting."""

    def __init__(self, send: SendBatch, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._send = send
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._wake = trio.lowlevel.ParkingLot()
        self._running = False
        #: A round trip is in flight (from the batcher's task or a lone caller's).
        self._busy = False
        #: The cancel scope of a lone call in flight from its caller's task.
        self._alone: trio.CancelScope | None = None
        self._calls = 0
        self._round_trips = 0
        self._largest = 0

    def statistics(self) -> BatcherStats:
        return BatcherStats(
            calls=self._calls, round_trips=self._round_trips, largest_batch=self._largest
        )

    async def call(self, call: ScriptCall) -> object:
        """Run one call; returns its reply or raises what that call raised.

        Cancelled before its batch left, the call is never sent; cancelled after, it
        may have run (as with any command cancelled in flight).
        """
        if not self._running:
            raise RuntimeError("the script batcher is not running (the Redis client is not open)")
        if not self._busy and not self._queue:
            # Nothing in flight: send it from this task. Handing it to the batcher's
            # task would cost two task switches for nothing to share the trip with.
            outcome = await self._send_alone(call)
        else:
            pending = _Pending(call)
            self._queue.append(pending)
            self._wake.unpark()
            try:
                await pending.done.wait()
            except BaseException:
                pending.abandoned = True
                raise
            outcome = pending.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _send_alone(self, call: ScriptCall) -> Outcome:
        self._busy = True
        self._count_round_trip(1)
        try:
            # Cancelled by ``run`` when the batcher stops, as a batch in flight would be.
            with trio.CancelScope() as self._alone:
                outcomes = await self._send([call])
                if len(outcomes) != 1:
                    raise RuntimeError(f"{len(outcomes)} outcomes for one call")
                return outcomes[0]
            return RedisConnectionError(_CLOSED_IN_FLIGHT)
        except Exception as exc:
            return exc
        finally:
            self._alone = None
            self._busy = False
            if self._queue:
                self._wake.unpark()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send batches until cancelled; calls still queued then fail as cancelled."""
        self._running = True
        task_status.started()
        try:
            while True:
                while self._busy or not self._queue:
                    await self._wake.park()
                batch = self._take()
                if batch:
                    self._busy = True
                    try:
                        await self._round_trip(batch)
                    finally:
                        self._busy = False
        finally:
            self._running = False
            if self._alone is not None:
                self._alone.cancel()
            while self._queue:
                pending = self._queue.popleft()
                pending.outcome = RedisConnectionError("the Redis client closed before the call")
                pending.done.set()

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if not pending.abandoned:
                batch.append(pending)
        return batch

    def _count_round_trip(self, calls: int) -> None:
        self._calls += calls
        self._round_trips += 1
        self._largest = max(self._largest, calls)

    async def _round_trip(self, batch: list[_Pending]) -> None:
        self._count_round_trip(len(batch))
        outcomes: Sequence[Outcome]
        try:
            outcomes = await self._send([p.call for p in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)} calls")
        except trio.Cancelled:
            self._settle(
                batch,
                [RedisConnectionError(_CLOSED_IN_FLIGHT) for _ in batch],
            )
            raise
        except Exception as exc:
            outcomes = [exc] * len(batch)
        self._settle(batch, outcomes)

    @staticmethod
    def _settle(batch: list[_Pending], outcomes: Sequence[Outcome]) -> None:
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.outcome = outcome
            pending.done.set()
