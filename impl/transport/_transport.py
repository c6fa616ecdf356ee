"""``EventTransport``: LibreChat's ``IEventTransport`` with Python names, over a Bus.

It is the per-replica registry of :class:`StreamActor` tasks and the sink of the bus.
``MemoryEventTransport`` and ``RedisEventTransport`` are this class over a
:class:`MemoryBus` or a :class:`RedisBus`; nothing above the bus differs.

Edge cases worth knowing:

* ``subscribe`` returns only after the channel subscription is acknowledged, then
  catches up from the chunk log (or the producer's early buffer) at ``start_seq``, so
  no event between ``start_seq`` and "live" is lost or duplicated.
* Incoming traffic for a stream with no local actor is dropped (nothing here needs it).
* The channel stays subscribed while abort callbacks exist, even with no SSE
  subscriber, so a Stop pressed elsewhere still reaches the generator (docs/librechat.md, bug 17).
* There is no ``syncReorderBuffer`` and no ``resetSequence``: every attachment starts
  from an exact seq and catches up from the log, and the counter is shared and
  monotonic across turns (resetting it caused bugs 9 and 10 of docs/librechat.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import trio

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._errors import EventTooLarge
from streamcheck.impl._seams import WallClock
from streamcheck.impl.transport._actor import (
    ActorStats,
    ActorTimings,
    DeliveryTotals,
    JobRecords,
    StreamActor,
)
from streamcheck.impl.transport._bus import Bus, EventKind, PublishOutcome, PublishRefused
from streamcheck.impl.transport._commands import Acknowledgement
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent, encode_body
from streamcheck.model import JSONValue, StreamEvent

logger = logging.getLogger(__name__)

AllLeftCallback = Callable[[], None]


@dataclass(frozen=True, slots=True)
class TransportStats:
    streams: int
    subscribers: int
    malformed_dropped: int
    untracked_dropped: int
    #: Reorder statistics of every subscriber served, those still attached included.
    delivery: DeliveryTotals


class Subscription:
    """A live attachment: iterate it for events; it ends after the terminal.

    Leaving early (``aclose`` or the ``async with`` block) detaches it. A remote abort
    still reaches it as the aborted generation's final ``Done`` event.
    """

    def __init__(
        self,
        transport: EventTransport,
        stream_id: str,
        generation: str,
        sub_id: int,
        events: trio.MemoryReceiveChannel[StreamEvent],
        start_seq: int,
    ) -> None:
        self.stream_id = stream_id
        self.generation = generation
        #: The first seq this subscription is owed.
        self.start_seq = start_seq
        self.sub_id = sub_id
        self._transport = transport
        self._events = events
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            return await self._events.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> StreamEvent:
        """The next event; raises ``trio.EndOfChannel`` after the terminal."""
        return await self._events.receive()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._events.close()
        await self._transport._detach(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()


class EventTransport:
    def __init__(
        self,
        bus: Bus,
        *,
        nursery: trio.Nursery,
        jobs: JobRecords,
        wall_clock: WallClock,
        timings: ActorTimings,
        max_event_bytes: int,
        actor_type: type[StreamActor] = StreamActor,
    ) -> None:
        self._bus = bus
        self._actor_type = actor_type
        self._nursery = nursery
        self._jobs = jobs
        self._wall = wall_clock
        self._timings = timings
        self._max_event_bytes = max_event_bytes
        self._actors: dict[str, tuple[StreamActor, trio.CancelScope]] = {}
        self._all_left: dict[str, AllLeftCallback] = {}
        #: Calls in progress per stream (subscribe, on_abort): an actor with one of
        #: these is not idle, whatever its subscriber count says yet.
        self._in_progress: dict[str, int] = {}
        self._next_sub_id = 0
        self._malformed = 0
        self._untracked = 0
        self._delivery_totals = DeliveryTotals()
        bus.attach_sink(self)

    # -- Sink ---------------------------------------------------------------------

    def deliver(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None:
        entry = self._actors.get(stream_id)
        if entry is None:
            self._untracked += 1
            return
        entry[0].incoming(message)

    def reads(self, stream_id: str) -> bool:
        entry = self._actors.get(stream_id)
        # (No actor: delivered anyway, to be counted as untracked.)
        return entry is None or entry[0].reads_events

    def restored(self, stream_id: str) -> None:
        entry = self._actors.get(stream_id)
        if entry is not None:
            entry[0].restored()

    def malformed(self, stream_id: str | None, reason: str) -> None:
        self._malformed += 1
        logger.warning("dropped malformed message for stream %s: %s", stream_id, reason)
        if stream_id is not None and (entry := self._actors.get(stream_id)) is not None:
            entry[0].malformed()

    # -- actors -------------------------------------------------------------------

    def _actor(self, stream_id: str) -> StreamActor:
        entry = self._actors.get(stream_id)
        if entry is not None:
            return entry[0]
        actor = self._actor_type(
            stream_id,
            bus=self._bus,
            jobs=self._jobs,
            wall_clock=self._wall,
            timings=self._timings,
            totals=self._delivery_totals,
        )
        scope = trio.CancelScope()

        async def run_actor() -> None:
            with scope:
                await actor.run()
            # Ended by a failure of its own: the next request starts a fresh actor.
            if (entry := self._actors.get(stream_id)) is not None and entry[0] is actor:
                del self._actors[stream_id]

        self._actors[stream_id] = (actor, scope)
        self._nursery.start_soon(run_actor, name=f"stream-actor:{stream_id}")
        return actor

    # -- publishing ------------------------------------------------------------------

    async def emit_chunk(self, stream_id: str, generation: str, event: JSONValue) -> PublishOutcome:
        return await self._emit(stream_id, generation, EventKind.CHUNK, event)

    async def emit_done(
        self, stream_id: str, generation: str, final: JSONValue, *, by_abort: bool = False
    ) -> PublishOutcome:
        """Publish the turn's Done; ``by_abort`` for an abort's, after ``claim_abort``."""
        return await self._emit(stream_id, generation, EventKind.DONE, final, by_abort=by_abort)

    async def emit_error(self, stream_id: str, generation: str, message: str) -> PublishOutcome:
        return await self._emit(stream_id, generation, EventKind.ERROR, message)

    async def _emit(
        self,
        stream_id: str,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        *,
        by_abort: bool = False,
    ) -> PublishOutcome:
        encoded = self._checked_encoding(stream_id, body)
        # Held while in flight, so that cleanup never stops the actor under it: an
        # abort on a replica that is not producing emits its Done through an actor
        # that is idle there. (``_holding`` inlined: this is every event's path, and
        # a generator-based context manager costs more than the rest of this method.)
        in_progress = self._in_progress
        in_progress[stream_id] = in_progress.get(stream_id, 0) + 1
        try:
            return await self._actor(stream_id).emit(
                generation, kind, body, encoded, by_abort=by_abort
            )
        finally:
            self._release_hold(stream_id)

    async def submit_chunk(
        self, stream_id: str, generation: str, event: JSONValue, acknowledgement: Acknowledgement
    ) -> None:
        """Queue a chunk without waiting for its publish (a coalesced emit, see
        ``StreamActor.submit``): the stream's actor answers ``acknowledgement``. Waits
        only while the actor has its most submitted emits in flight."""
        encoded = self._checked_encoding(stream_id, event)
        # (Not held as an awaited emit is: the actor counts its submitted emits, see
        # ``is_idle``.)
        await self._actor(stream_id).submit(
            generation, EventKind.CHUNK, event, encoded, acknowledgement
        )

    def _checked_encoding(self, stream_id: str, body: JSONValue) -> str:
        """``body`` as JSON, refused if larger than an event may be."""
        encoded = encode_body(body)
        size = len(encoded)  # ASCII: characters are bytes
        if size > self._max_event_bytes:
            raise EventTooLarge(stream_id=stream_id, size=size, limit=self._max_event_bytes)
        return encoded

    async def claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        """Fence ``generation`` as aborted (see :meth:`Bus.claim_abort`)."""
        return await self._bus.claim_abort(stream_id, generation)

    async def emit_abort(self, stream_id: str, generation: str) -> None:
        await self._bus.publish_abort(stream_id, generation)

    def start_producing(self, stream_id: str, generation: str, early: EarlyBuffer) -> None:
        self._actor(stream_id).produce(generation, early)

    def stop_producing(self, stream_id: str, generation: str) -> None:
        if (entry := self._actors.get(stream_id)) is not None:
            entry[0].stop_producing(generation)

    # -- subscribing ----------------------------------------------------------------

    async def subscribe(
        self,
        stream_id: str,
        *,
        generation: str,
        start_seq: int,
        job_ended: bool = False,
        resume: bool = False,
    ) -> Subscription:
        """Attach a subscriber that will see ``generation`` from ``start_seq`` on."""
        with self._holding(stream_id):
            return await self._subscribe(stream_id, generation, start_seq, job_ended, resume)

    async def _subscribe(
        self, stream_id: str, generation: str, start_seq: int, job_ended: bool, resume: bool
    ) -> Subscription:
        actor = self._actor(stream_id)
        await self._subscribe_channel(stream_id)
        send, receive = trio.open_memory_channel[StreamEvent](float("inf"))
        self._next_sub_id += 1
        sub_id = self._next_sub_id
        try:
            await self._attach_reader(
                actor,
                sub_id,
                generation=generation,
                start_seq=start_seq,
                out=send,
                job_ended=job_ended,
                resume=resume,
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._bus.release_channel(stream_id)
            raise
        return Subscription(self, stream_id, generation, sub_id, receive, start_seq)

    async def _subscribe_channel(self, stream_id: str) -> None:
        """Hold the stream's channel for a new reader. Returns once Redis acknowledged
        the SUBSCRIBE: everything published from then on reaches this replica, and the
        reader's catch-up from the log covers everything before."""
        await self._bus.acquire_channel(stream_id)

    async def _attach_reader(
        self,
        actor: StreamActor,
        sub_id: int,
        *,
        generation: str,
        start_seq: int,
        out: trio.MemorySendChannel[StreamEvent],
        job_ended: bool,
        resume: bool,
    ) -> None:
        """Attach a reader to the stream's actor, which catches it up from ``start_seq``
        before it goes live."""
        await actor.attach(
            sub_id,
            generation=generation,
            start_seq=start_seq,
            out=out,
            job_ended=job_ended,
            resume=resume,
        )

    async def _detach(self, subscription: Subscription) -> None:
        entry = self._actors.get(subscription.stream_id)
        remaining = 0
        if entry is not None:
            remaining = await entry[0].detach(subscription.sub_id)
        await self._bus.release_channel(subscription.stream_id)
        if remaining == 0:
            await self._last_reader_left(
                subscription.stream_id, entry[0] if entry is not None else None
            )

    async def _last_reader_left(self, stream_id: str, actor: StreamActor | None) -> None:
        """The last local reader of the stream left ``actor`` (``None`` if the actor had
        stopped). The actor keeps the stream's state (abort callbacks, the producer's
        buffer) and the channel stays held for as long as an abort callback needs it;
        only the all-left callback runs."""
        if callback := self._all_left.get(stream_id):
            callback()

    async def check_lost_writes(self, stream_id: str) -> None:
        """If Redis lost seqs of the stream (this replica saw them, or the server was
        restarted or failed over), push the shared counter past them and log them as
        lost, so that what comes next never reuses their numbers."""
        with self._holding(stream_id):  # as an emit: cleanup must not stop its actor
            if (entry := self._actors.get(stream_id)) is not None:
                await entry[0].audit()
            else:
                await self._bus.mark_lost(stream_id, floor=0)

    def on_all_subscribers_left(self, stream_id: str, callback: AllLeftCallback) -> None:
        """Run ``callback`` each time the last local subscriber of the stream leaves."""
        self._all_left[stream_id] = callback

    def get_subscriber_count(self, stream_id: str) -> int:
        entry = self._actors.get(stream_id)
        return entry[0].subscriber_count if entry is not None else 0

    # -- abort ------------------------------------------------------------------------

    async def on_abort(self, stream_id: str, generation: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any replica aborts ``generation``.

        Holds the channel (acknowledged before returning) until :meth:`remove_abort`.
        """
        with self._holding(stream_id):
            actor = self._actor(stream_id)
            await self._bus.acquire_channel(stream_id)
            actor.on_abort(generation, callback)

    @contextlib.contextmanager
    def _holding(self, stream_id: str) -> Iterator[None]:
        self._in_progress[stream_id] = self._in_progress.get(stream_id, 0) + 1
        try:
            yield
        finally:
            self._release_hold(stream_id)

    def _release_hold(self, stream_id: str) -> None:
        remaining = self._in_progress[stream_id] - 1
        if remaining:
            self._in_progress[stream_id] = remaining
        else:
            del self._in_progress[stream_id]

    async def remove_abort(self, stream_id: str, generation: str) -> None:
        entry = self._actors.get(stream_id)
        if entry is None:
            return
        entry[0].on_abort(generation, None)
        await self._bus.release_channel(stream_id)

    # -- lifecycle ----------------------------------------------------------------------

    def actor_statistics(self) -> list[ActorStats]:
        return [actor.statistics() for actor, _ in self._actors.values()]

    def get_tracked_stream_ids(self) -> list[str]:
        return list(self._actors)

    def is_idle(self, stream_id: str) -> bool:
        if stream_id in self._in_progress:
            return False
        entry = self._actors.get(stream_id)
        return entry is None or (
            entry[0].subscriber_count == 0
            and not entry[0].has_abort_callbacks
            and not entry[0].has_submitted_emits
        )

    def cleanup(self, stream_id: str) -> None:
        """Stop the stream's actor and forget its callbacks (its job is gone)."""
        entry = self._actors.pop(stream_id, None)
        self._all_left.pop(stream_id, None)
        if entry is not None:
            entry[1].cancel()

    def destroy(self) -> None:
        for stream_id in list(self._actors):
            self.cleanup(stream_id)

    @property
    def bus(self) -> Bus:
        """The bus this transport publishes and subscribes through (benchmarks measure
        its publish on its own)."""
        return self._bus

    def statistics(self) -> TransportStats:
        return TransportStats(
            streams=len(self._actors),
            subscribers=sum(a.subscriber_count for a, _ in self._actors.values()),
            malformed_dropped=self._malformed,
            untracked_dropped=self._untracked,
            delivery=self._delivery(),
        )

    def _delivery(self) -> DeliveryTotals:
        """Delivery statistics of every reader served here, those still attached
        included: a repair counts from the moment it is made, not from its reader's
        departure."""
        totals = dataclasses.replace(self._delivery_totals)
        for actor, _ in self._actors.values():
            actor.add_attached_delivery(totals)
        return totals
