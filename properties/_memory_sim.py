"""The memory backend under the simulation's control: replicas of impl/ sharing one
:class:`~streamcheck.impl.MemoryBackend` (its :class:`~streamcheck.impl.seams.MemoryHub`
and job store), with every bus call and every delivery a step a decision chooses.

The problem: the memory hub has no network, so nothing in it is drawn the way the
simulated Redis draws commands and deliveries; run as it is, the only choices left are
trio's task order and the clock, and the memory bus and hub would be judged on one
interleaving per decision list. Its delivery model, made of drawn steps:

* **Bus calls.** Each call a replica makes on its :class:`SteppedMemoryBus` (publish,
  claim an abort, signal it, read the log, repair the counter, take or release a
  channel) parks as a pending ``command`` until a decision runs it; the hub then
  carries it out atomically, as the in-process hub always does (fence, seq, log and
  fan-out in one step). Calls are independent: each is its own lane, since one process
  has no connection to queue them on. A call cancelled while it waits never happens,
  as a cancelled task never reaches the hub.
* **Deliveries.** The hub fans a message out to every subscribed bus at once; each
  bus's copy waits as a pending ``delivery`` until a decision hands it to the replica.
  A bus's copies are handed over in the order the hub made them (one FIFO per bus, as
  the hub calls each bus in publish order); different buses' copies in any order. The
  hub never loses a message: nothing here drops one.
* **Time** is the world's mock clock (the job store's wall clock included), which only
  clock decisions move.

Only the timing is the simulation's: which messages are fanned out, with which seqs,
and what the fence refuses are the hub's own code, unchanged (the bus subclass calls
it). With ``auto`` on (the world's shutdown), calls and deliveries happen at once.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

import trio

from streamcheck.impl import (
    MemoryBackend,
    ReplicaParts,
    ReplicaSettings,
    SerializableJobData,
    WallClock,
)
from streamcheck.impl.seams import (
    AbortSignal,
    EventKind,
    LostWrites,
    MemoryBus,
    PublishOutcome,
    PublishRefused,
    SequencedEvent,
)
from streamcheck.model import History, JSONValue, KeyspaceProblem
from streamcheck.properties.sim import PendingItem

__all__ = ["SteppedMemory", "SteppedMemoryBus"]


@dataclass(slots=True)
class _Call:
    """A bus call waiting for its step."""

    item: PendingItem
    go: trio.Event


@dataclass(slots=True)
class _Delivery:
    """One bus's copy of a fanned-out message, waiting for its step."""

    item: PendingItem
    hand_over: Callable[[], None]


class SteppedMemory:
    """One memory backend, its replicas' buses, and their pending steps."""

    def __init__(self, *, wall_clock: WallClock, settings: ReplicaSettings) -> None:
        self.backend = MemoryBackend(wall_clock=wall_clock, settings=settings)
        self._next_id = 0
        self._calls: dict[int, _Call] = {}
        #: Each bus's undelivered copies, in the order the hub made them.
        self._inbound: dict[str, deque[_Delivery]] = {}
        self._auto = False

    def replica_parts(self, parts: ReplicaParts, replica: str) -> ReplicaParts:
        """``parts`` whose memory bus is ``replica``'s, stepped by this world."""
        stepper = self

        class ReplicaBus(SteppedMemoryBus):
            _stepper = stepper
            _name = replica

        return dataclasses.replace(parts, memory_bus=ReplicaBus)

    # -- what the driver sees ------------------------------------------------------------

    def runnable(self) -> list[PendingItem]:
        """Every call, and the oldest copy waiting for each bus, by id."""
        heads = [call.item for call in self._calls.values()]
        heads += [queue[0].item for queue in self._inbound.values() if queue]
        return sorted(heads, key=_item_id)

    def pending(self) -> list[PendingItem]:
        """Every waiting call and copy, by id."""
        items = [call.item for call in self._calls.values()]
        items += [delivery.item for queue in self._inbound.values() for delivery in queue]
        return sorted(items, key=_item_id)

    def step(self, item_id: int) -> None:
        """Let call ``item_id`` reach the hub (when its task next runs), or hand copy
        ``item_id`` to its replica; it must be runnable."""
        call = self._calls.pop(item_id, None)
        if call is not None:
            call.go.set()
            return
        for queue in self._inbound.values():
            if queue and queue[0].item.id == item_id:
                queue.popleft().hand_over()
                return
        raise ValueError(f"item {item_id} is not runnable")

    def run_until_quiet(self) -> int:
        """Step every runnable item, oldest first, until none is left; returns how many.
        Released calls reach the hub once their tasks run, so they queue nothing yet."""
        steps = 0
        while True:
            items = self.runnable()
            if not items:
                return steps
            self.step(items[0].id)
            steps += 1

    def set_auto(self, auto: bool) -> None:
        """Switch mode; switching to auto first runs everything pending."""
        if auto and not self._auto:
            self.run_until_quiet()
        self._auto = auto

    # -- what the buses call -------------------------------------------------------------

    async def turn(self, bus: str, description: str) -> None:
        """Wait until a decision runs this call (at once in auto mode)."""
        if self._auto:
            return
        item = self._item("command", f"{bus}#{self._next_id}", description)
        call = _Call(item, trio.Event())
        self._calls[item.id] = call
        try:
            await call.go.wait()
        finally:
            self._calls.pop(item.id, None)

    def queue_delivery(self, bus: str, description: str, hand_over: Callable[[], None]) -> None:
        if self._auto:
            hand_over()
            return
        item = self._item("delivery", bus, description)
        self._inbound.setdefault(bus, deque()).append(_Delivery(item, hand_over))

    def _item(
        self, kind: Literal["command", "delivery"], lane: str, description: str
    ) -> PendingItem:
        self._next_id += 1
        return PendingItem(id=self._next_id, kind=kind, connection=lane, description=description)

    # -- the job store, read outside the simulation ---------------------------------------

    def job(self, stream_id: str) -> SerializableJobData | None:
        return self.backend.jobs.peek(stream_id)


class SteppedMemoryBus(MemoryBus):
    """A replica's memory bus whose calls and deliveries are the world's steps (see the
    module docstring); what each does is the base class's."""

    _stepper: ClassVar[SteppedMemory]
    _name: ClassVar[str]

    async def publish(
        self,
        stream_id: str,
        *,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        floor: int,
        encoded_body: str | None = None,
        by_abort: bool = False,
    ) -> PublishOutcome:
        abort = " (abort)" if by_abort else ""
        await self._stepper.turn(
            self._name, f"publish {kind.value} {stream_id} {generation}{abort}"
        )
        return await super().publish(
            stream_id,
            generation=generation,
            kind=kind,
            body=body,
            floor=floor,
            encoded_body=encoded_body,
            by_abort=by_abort,
        )

    async def claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        await self._stepper.turn(self._name, f"claim abort {stream_id} {generation}")
        return await super().claim_abort(stream_id, generation)

    async def publish_abort(self, stream_id: str, generation: str) -> None:
        await self._stepper.turn(self._name, f"signal abort {stream_id} {generation}")
        await super().publish_abort(stream_id, generation)

    async def read_log(
        self, stream_id: str, *, from_seq: int, count: int
    ) -> list[SequencedEvent | LostWrites]:
        await self._stepper.turn(self._name, f"read log {stream_id} from {from_seq}")
        return await super().read_log(stream_id, from_seq=from_seq, count=count)

    async def mark_lost(self, stream_id: str, *, floor: int) -> LostWrites | None:
        await self._stepper.turn(self._name, f"raise counter {stream_id} to {floor}")
        return await super().mark_lost(stream_id, floor=floor)

    async def acquire_channel(self, stream_id: str) -> None:
        await self._stepper.turn(self._name, f"acquire channel {stream_id}")
        await super().acquire_channel(stream_id)

    async def release_channel(self, stream_id: str) -> None:
        await self._stepper.turn(self._name, f"release channel {stream_id}")
        await super().release_channel(stream_id)

    def _receive(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None:
        self._stepper.queue_delivery(
            self._name,
            f"message {stream_id} {_describe(message)} to {self._name}",
            partial(super()._receive, stream_id, message),
        )


def _describe(message: SequencedEvent | AbortSignal) -> str:
    if isinstance(message, AbortSignal):
        return f"abort {message.generation}"
    return f"{type(message).__name__.lower()} {message.generation} #{message.seq}"


def _item_id(item: PendingItem) -> int:
    return item.id


# -- judging the job store (the memory twin of properties/_store_audit.py) ---------------


def job_states(
    memory: SteppedMemory, streams: set[str]
) -> dict[str, tuple[str | None, str | None]]:
    """Each of ``streams``' job as (generation, status), for ``JobStoreWatcher.observe``."""
    states: dict[str, tuple[str | None, str | None]] = {}
    for stream in streams:
        job = memory.job(stream)
        if job is not None:
            states[stream] = (job.generation_id, job.status.value)
    return states


class EarlyExpiryWatch:
    """A finished job stays for its TTL, so that a late client still replays the turn;
    in the memory job store only the cleanup's TTL rule removes a finished job (the
    manager deletes none). After every decision: a finished job gone before its TTL
    passed is a ``KeyspaceProblem``."""

    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        #: Each stream's finished job when last seen: (generation, completed at, ms).
        self._finished: dict[str, tuple[str, int]] = {}

    def sample(
        self,
        memory: SteppedMemory,
        streams: set[str],
        history: History,
        now: float,
        *,
        wall_now_ms: int,
    ) -> None:
        for stream in sorted(streams):
            job = memory.job(stream)
            before = self._finished.pop(stream, None)
            if job is None and before is not None:
                generation, completed_at = before
                age = wall_now_ms - completed_at
                if age < self._ttl_ms:
                    history.append(
                        KeyspaceProblem(
                            time=now,
                            key=f"memory job {stream}",
                            problem=(
                                f"of finished generation {generation} was removed at most "
                                f"{age / 1000:g} s after it finished, before its TTL of "
                                f"{self._ttl_ms / 1000:g} s"
                            ),
                        )
                    )
            if job is not None and job.status.is_terminal and job.completed_at is not None:
                self._finished[stream] = (job.generation_id, job.completed_at)


def audit_memory_store(
    memory: SteppedMemory,
    streams: set[str],
    history: History,
    now: float,
    listings: list[tuple[str, tuple[str, ...]]],
    *,
    wall_now_ms: int,
    expired_after_ms: int,
) -> None:
    """After the heal, append a ``KeyspaceProblem`` for every broken invariant of the
    memory job store:

    * each user's job listing, made once all was quiet, names exactly that user's
      running jobs;
    * no job is still running: the heal finished every turn and passed the producer
      timeout, and in one process nothing can lose a status write (no crash, no cut
      connection), so a running job is one whose end was never recorded;
    * no finished job is older than ``expired_after_ms`` (its TTL plus one cleanup
      interval: a cleanup pass has run since it expired).
    """
    running_of: dict[str, set[str]] = {}
    for stream in sorted(streams):
        job = memory.job(stream)
        if job is not None and job.status.is_terminal and job.completed_at is not None:
            age = wall_now_ms - job.completed_at
            if age > expired_after_ms:
                history.append(
                    KeyspaceProblem(
                        time=now,
                        key=f"memory job {stream}",
                        problem=(
                            f"finished {age / 1000:g} s ago and is still stored: it outlived "
                            f"its TTL and the cleanup pass after it"
                        ),
                    )
                )
        if job is not None and not job.status.is_terminal:
            running_of.setdefault(job.user_id, set()).add(stream)
            history.append(
                KeyspaceProblem(
                    time=now,
                    key=f"memory job {stream}",
                    problem=(
                        f"is still {job.status.value} (generation {job.generation_id}) after "
                        "every turn ended and every timeout passed: its end was never recorded"
                    ),
                )
            )
    for user, listed in listings:
        expected = running_of.get(user, set())
        if set(listed) != expected:
            history.append(
                KeyspaceProblem(
                    time=now,
                    key=f"memory job index of {user}",
                    problem=(
                        f"lists the jobs {sorted(listed)} as active, but the running jobs "
                        f"of user {user} are {sorted(expected)}"
                    ),
                )
            )
