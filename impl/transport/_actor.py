"""One stream on one replica: a trio task that alone owns the stream's local state.

The actor holds the producer's early buffer, every local subscriber's reorder buffer
and the abort callbacks, and nothing else touches them: callers send commands
(:mod:`~streamcheck.impl.transport._commands`) through its inbox and wait for a reply.
Every interleaving is therefore a message order, which is what the simulation
enumerates. Commands are handled one at a time, each under the actor's turn (a lock).

The actor makes no decisions of its own. It feeds inputs to the sans-IO cores
(:class:`~streamcheck.impl._reorder.ReorderBuffer`,
:class:`~streamcheck.impl._early_buffer.EarlyBuffer`,
:class:`~streamcheck.impl.transport._silence.SilenceInquiry`),
performs the I/O they ask for (publish, log reads, job lookups) and reports failures
back to them.

The one deviation: the caller takes the turn
--------------------------------------------
The two commands of every event, an emit and an incoming pub/sub message, are handled
by the calling task itself when the actor has nothing queued or in hand: the caller
takes the turn and does what the actor would do next, sparing the task switches
through the inbox. Whatever is asked meanwhile queues behind the turn, so the order of
handling, and therefore every state the actor's own task could reach, is the same; the
state is still touched only under the turn. This is the only code that touches the
actor's state from outside its task, and it lives in one section of
:class:`StreamActor` (``_take_turn_now``, ``_emit_in_callers_task``,
``_offer_in_callers_task``). A subclass that overrides ``emit`` or ``incoming`` to
always go through the inbox gives up only speed.

Coalesced emits
---------------
A generator that need not wait for each event's durability submits it: the emit
joins the actor's queue of emits and the caller gets an
:class:`~streamcheck.impl.transport._commands.Acknowledgement` to await later, or
never. One :class:`~streamcheck.impl.transport._commands.Flush` command per burst tells
the actor to publish everything queued by then in one bus call (one script call and one
message on Redis), each event still fenced, sequenced and logged on its own. An awaited
``emit`` that finds emits queued joins the queue behind them, so a turn's ``done`` or
``error`` is published after, and answered after, every event its generator queued
before it. At most ``ActorTimings.max_in_flight`` submitted emits are queued or being
published; the next ``submit`` waits for room.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, assert_never

import trio

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._errors import IllegalTransition, StreamActorStopped
from streamcheck.impl._log import LostWrites
from streamcheck.impl._reorder import ReorderBuffer, ReorderStats, Step
from streamcheck.impl._seams import WallClock
from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import JobUpdate, SerializableJobData
from streamcheck.impl.redis import RedisConnectionError
from streamcheck.impl.transport._bus import (
    Bus,
    EventKind,
    Published,
    PublishOutcome,
    PublishRefused,
)
from streamcheck.impl.transport._commands import (
    AbortCallback,
    Acknowledgement,
    Attach,
    Audit,
    Command,
    Continue,
    Detach,
    Emit,
    Flush,
    Incoming,
    OnAbort,
    Produce,
    Rearm,
    Reply,
    Restored,
    StopProducing,
    refuse,
)
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.impl.transport._silence import (
    CheckLostWrites,
    EndWith,
    FenceProducer,
    KeepWaiting,
    ReadJob,
    ReadLogTail,
    Resync,
    SilenceInquiry,
    SilenceOutcome,
    SilenceRequest,
)
from streamcheck.impl.transport._verdict import PRODUCER_LOST
from streamcheck.model import Chunk, Done, Failure, JSONValue, StreamEvent

logger = logging.getLogger(__name__)

#: Rows per chunk-log read during catch-up and repair.
LOG_PAGE = 500
#: The terminal readers get when their stream's actor failed unexpectedly (they may
#: resume on another replica).
ACTOR_FAILED: Final = "stream failed on this replica: internal error (logged)"
#: Generations whose last published seq an actor remembers (the current turn and a
#: few before it are enough: older turns have no readers left to warn).
REMEMBERED_GENERATIONS = 8
#: Queued emits published in one bus call at most (a longer queue takes several).
MAX_BATCH_EVENTS = 128
#: Submitted emits an actor holds at most, queued or being published, by default.
MAX_IN_FLIGHT = 512
#: When Redis did not answer whether an abort claimed a turn, the actor asks again
#: after this long (see ``_obey_abort``).
ABORT_CHECK_RETRY_S = 0.25


class JobRecords(Protocol):
    """The part of the job store an actor needs (a :class:`~streamcheck.impl.jobstore.JobStore`)."""

    async def get_job(self, stream_id: str) -> SerializableJobData | None: ...

    async def update_job(
        self, stream_id: str, update: JobUpdate, *, expected_generation: str | None = None
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class ActorTimings:
    reorder_timeout: float
    reorder_capacity: int
    idle_probe: float
    producer_timeout_ms: int
    #: Submitted emits queued or being published at most (back-pressure on ``submit``).
    max_in_flight: int = MAX_IN_FLIGHT


@dataclass(slots=True)
class LocalSubscriber:
    """One reader attached on this replica: its reorder buffer and its channel."""

    sub_id: int
    buffer: ReorderBuffer
    out: trio.MemorySendChannel[StreamEvent]
    wake_at: float | None = None
    #: The job had ended when this subscriber attached: if the log cannot supply the
    #: terminal, take it from the job record right after catch-up.
    job_ended_at_attach: bool = False


@dataclass(slots=True)
class _Producer:
    generation: str
    early: EarlyBuffer


@dataclass(frozen=True, slots=True)
class ActorStats:
    stream_id: str
    subscribers: int
    producing: str | None
    high_water: int
    malformed: int
    abort_signals: int
    #: Events held in the producer's early buffer (0 when not producing here).
    early_buffer_events: int


@dataclass(slots=True)
class _Counts:
    malformed: int = 0
    abort_signals: int = 0


@dataclass(slots=True)
class DeliveryTotals:
    """Reorder-buffer statistics summed over every subscriber a replica has served (the
    transport's statistics include the readers still attached)."""

    subscribers: int = 0
    delivered: int = 0
    duplicates_dropped: int = 0
    foreign_skipped: int = 0
    repairs: int = 0
    repaired_events: int = 0
    probe_repaired_events: int = 0
    late_fills: int = 0
    gaps: int = 0
    foreign_hints: int = 0
    #: Abort signals for a generator running here that no abort had claimed (forged),
    #: dropped by the replica's actors (not a reader statistic: counted directly).
    unconfirmed_aborts: int = 0

    def add(self, stats: ReorderStats) -> None:
        self.subscribers += 1
        self.delivered += stats.delivered
        self.duplicates_dropped += stats.duplicates_dropped
        self.foreign_skipped += stats.foreign_skipped
        self.repairs += stats.repairs
        self.repaired_events += stats.repaired_events
        self.probe_repaired_events += stats.probe_repaired_events
        self.late_fills += stats.late_fills
        self.gaps += stats.gaps
        self.foreign_hints += stats.foreign_hints


class StreamActor:
    def __init__(
        self,
        stream_id: str,
        *,
        bus: Bus,
        jobs: JobRecords,
        wall_clock: WallClock,
        timings: ActorTimings,
        totals: DeliveryTotals | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._totals = totals if totals is not None else DeliveryTotals()
        self._bus = bus
        self._jobs = jobs
        self._wall = wall_clock
        self._timings = timings
        self._send, self._inbox = trio.open_memory_channel[Command](math.inf)
        #: Commands told but not yet taken by the actor's task (queued, or handed to it
        #: while it waited and not yet seen by it).
        self._untaken = 0
        #: Of those, :class:`Flush` commands (at most one): a reader-less actor's
        #: incoming events need no turn behind them (see ``incoming``).
        self._untaken_flushes = 0
        #: Held while a command is handled: by the actor's task, or by an emitting task
        #: that found the actor with nothing to do (see ``emit``).
        self._turn = trio.Lock()
        #: The deadline the actor's task waits for a command until (``-inf`` while it
        #: is not waiting): a timer set earlier must wake it.
        self._waiting_until = -math.inf
        self._subscribers: dict[int, LocalSubscriber] = {}
        self._producer: _Producer | None = None
        self._abort_callbacks: dict[str, AbortCallback] = {}
        #: Abort signals whose claim Redis did not confirm nor deny yet: generation ->
        #: when to ask again.
        self._abort_checks: dict[str, float] = {}
        #: Highest seq this replica has seen in the log or published itself (never one
        #: only heard on the channel, which anyone may publish on): the publish floor.
        self._high_water = -1
        #: The actor's task has ended: requests are refused (see ``_tell``).
        self._stopped = False
        #: Last seq each recent generation published from this replica: what readers
        #: here are owed even if Redis loses it (see ReorderBuffer.note_published).
        self._published: dict[str, int] = {}
        #: Recent generations that published their terminal from this replica.
        self._ended: dict[str, None] = {}
        self._counts = _Counts()
        #: Emits waiting for the next :class:`Flush` (see "Coalesced emits").
        self._queued: deque[Emit] = deque()
        #: A Flush is told and not yet handled: later emits join its batch.
        self._flush_told = False
        #: Places for submitted emits, queued or being published.
        self._room = trio.Semaphore(timings.max_in_flight)

    # -- API used by the transport (each call is one command) --------------------

    async def emit(
        self,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        encoded: str,
        *,
        by_abort: bool = False,
    ) -> PublishOutcome:
        reply: Reply[PublishOutcome] = Reply()
        command = Emit(generation, kind, body, encoded, reply, by_abort)
        if self._queued:
            self._queue(command)  # behind the emits queued before it
        elif self._take_turn_now():
            return await self._emit_in_callers_task(command)
        else:
            self._tell(command)
        return await reply.wait()

    async def submit(
        self,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        encoded: str,
        acknowledgement: Acknowledgement,
    ) -> None:
        """Queue an emit and return without waiting for its publish: the actor answers
        ``acknowledgement`` once it is published or refused (see "Coalesced emits").
        Waits only for room, while ``max_in_flight`` submitted emits are in flight."""
        try:
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._room.acquire()
        self._queue(Emit(generation, kind, body, encoded, acknowledgement, submitted=True))

    async def attach(
        self,
        sub_id: int,
        *,
        generation: str,
        start_seq: int,
        out: trio.MemorySendChannel[StreamEvent],
        job_ended: bool,
        resume: bool = False,
    ) -> None:
        reply: Reply[None] = Reply()
        self._tell(Attach(sub_id, generation, start_seq, out, job_ended, reply, resume))
        await reply.wait()

    async def detach(self, sub_id: int) -> int:
        """Remove a subscriber; returns how many remain (none once the actor stopped:
        it removed them all)."""
        reply: Reply[int] = Reply()
        self._tell(Detach(sub_id, reply))
        try:
            return await reply.wait()
        except StreamActorStopped:
            return 0

    def incoming(self, message: SequencedEvent | AbortSignal) -> None:
        if isinstance(message, AbortSignal):
            self._tell(Incoming(message))
        elif not self.reads_events and not self._stopped:
            # The high-water mark moves only on seqs the log or this replica's own
            # publishes confirm: anyone can publish on the channel.
            pass
        elif self._take_turn_now():
            self._offer_in_callers_task(message)
        else:
            self._tell(Incoming(message))

    def restored(self) -> None:
        self._tell(Restored())

    async def audit(self) -> None:
        """Make sure Redis still has every seq this replica saw (see ``_mark_lost``)."""
        reply: Reply[None] = Reply()
        self._tell(Audit(reply))
        await reply.wait()

    def produce(self, generation: str, early: EarlyBuffer) -> None:
        self._tell(Produce(generation, early))

    def stop_producing(self, generation: str) -> None:
        self._tell(StopProducing(generation))

    def on_abort(self, generation: str, callback: AbortCallback | None) -> None:
        """Register (or with ``None`` remove) the abort callback of ``generation``."""
        self._tell(OnAbort(generation, callback))

    def malformed(self) -> None:
        self._counts.malformed += 1

    @property
    def reads_events(self) -> bool:
        """Whether incoming sequenced events matter here: a reader is attached, or a
        command that may attach one is waiting (a producer with no reader here hears
        its own events on the channel it holds for aborts, and drops them)."""
        return bool(self._subscribers) or self._untaken != self._untaken_flushes

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def has_abort_callbacks(self) -> bool:
        return bool(self._abort_callbacks)

    @property
    def has_submitted_emits(self) -> bool:
        """Submitted emits are queued or being published here, or wait for room."""
        return self._room.value < self._timings.max_in_flight

    def statistics(self) -> ActorStats:
        return ActorStats(
            stream_id=self.stream_id,
            subscribers=len(self._subscribers),
            producing=self._producer.generation if self._producer else None,
            high_water=self._high_water,
            malformed=self._counts.malformed,
            abort_signals=self._counts.abort_signals,
            early_buffer_events=len(self._producer.early.events) if self._producer else 0,
        )

    def add_attached_delivery(self, totals: DeliveryTotals) -> None:
        """Add the reorder-buffer statistics of the readers attached now to ``totals``
        (those of readers gone are in it already)."""
        for sub in self._subscribers.values():
            totals.add(sub.buffer.statistics())

    def __repr__(self) -> str:
        return (
            f"<StreamActor {self.stream_id!r} subscribers={len(self._subscribers)} "
            f"high_water={self._high_water}>"
        )

    def _tell(self, command: Command) -> None:
        """Queue ``command``; once the actor has stopped, answer it at once instead
        (a request that waited for a stopped actor would wait for ever)."""
        if self._stopped:
            refuse(command, self.stream_id)
        else:
            self._untaken += 1
            self._send.send_nowait(command)

    def _queue(self, command: Emit) -> None:
        """Add an emit to the next batch, telling the actor to flush if nobody has."""
        if self._stopped:
            self._refuse_emit(command)
            return
        self._queued.append(command)
        if not self._flush_told:
            self._tell_flush()

    def _tell_flush(self) -> None:
        self._flush_told = True
        self._untaken_flushes += 1
        self._tell(Flush())

    def _refuse_emit(self, command: Emit) -> None:
        refuse(command, self.stream_id)
        if command.submitted:
            self._room.release()

    # -- the one deviation: the caller takes the turn (see the module docstring) ----

    def _take_turn_now(self) -> bool:
        """Take the turn if no command is waiting or being handled."""
        if self._untaken or self._stopped or self._turn.locked():
            return False
        self._turn.acquire_nowait()  # free (released locks hand over to waiters at once)
        return True

    async def _emit_in_callers_task(self, command: Emit) -> PublishOutcome:
        """Handle an emit from the caller's task, which holds the turn (and gives it
        back), as the actor would handle it next, saving the two task switches of the
        round trip through its inbox. Commands told meanwhile wait for the turn.
        (Cancelled mid-publish, the caller leaves the actor's bookkeeping of this
        event undone, as the actor's own cancellation would: Redis has it or not.)"""
        try:
            await self._publish(command)
        finally:
            self._turn.release()
        return command.reply.result()

    def _offer_in_callers_task(self, message: SequencedEvent) -> None:
        """Handle an event from the delivering task, which holds the turn (and gives
        it back): each reader's deliveries are made at once, and whatever I/O a
        reader's step asks for is left to the actor, ahead of anything asked of it
        later. This saves a task switch per event and reader replica."""
        try:
            now = trio.current_time()
            rearm = False
            for sub in list(self._subscribers.values()):
                step = sub.buffer.offer(message, now)
                if self._carry_out(sub, step):
                    self._tell(Continue(sub.sub_id, step))
                elif sub.wake_at is not None and sub.wake_at < self._waiting_until:
                    rearm = True
            if rearm:  # one wake-up looks at every timer
                self._tell(Rearm())
        finally:
            self._turn.release()

    # -- the task -----------------------------------------------------------------

    async def _take_turn(self, command: Command | None) -> None:
        """Take the turn for ``command`` (``None``: the timers), after an emit that a
        caller is handling, if one is."""
        try:
            self._turn.acquire_nowait()
        except trio.WouldBlock:
            try:
                await self._turn.acquire()
            except BaseException:
                if command is not None:
                    refuse(command, self.stream_id)
                raise

    async def run(self) -> None:
        try:
            await self._loop()
        except Exception:
            # A bug here must cost this stream only: never the replica's nursery and the
            # other streams in it. Readers get a typed terminal, requests a typed refusal.
            logger.exception("stream %s: actor failed; the stream is ended here", self.stream_id)
            self._fail_readers()
        finally:
            # Cancelled (cleanup or replica crash): readers see their stream end
            # instead of hanging; they resume elsewhere. Requests still queued, and
            # any made from now on, are refused rather than left waiting.
            self._stopped = True
            for sub_id in list(self._subscribers):
                self._remove(sub_id)
            while self._queued:
                self._refuse_emit(self._queued.popleft())
            while True:
                try:
                    refuse(self._inbox.receive_nowait(), self.stream_id)
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break

    def _fail_readers(self) -> None:
        now = trio.current_time()
        for sub in list(self._subscribers.values()):
            failure = Failure(
                seq=sub.buffer.next_seq, generation=sub.buffer.generation, message=ACTOR_FAILED
            )
            self._carry_out(sub, sub.buffer.end_here(failure, now))

    async def _loop(self) -> None:
        while True:
            deadline = min(
                (s.wake_at for s in self._subscribers.values() if s.wake_at is not None),
                default=math.inf,
            )
            deadline = min(deadline, min(self._abort_checks.values(), default=math.inf))
            command: Command | None = None
            self._waiting_until = deadline
            if deadline == math.inf:
                # Most of the time nothing is due: skip the cancel scope, which costs
                # more than the rest of an event's handling here.
                command = await self._inbox.receive()
            else:
                with trio.move_on_at(deadline):
                    command = await self._inbox.receive()
            self._waiting_until = -math.inf
            if command is not None:
                self._untaken -= 1
                if isinstance(command, Flush):
                    self._untaken_flushes -= 1
            await self._take_turn(command)
            try:
                if command is None:
                    await self._fire_timers(trio.current_time())
                else:
                    await self._handle(command)
            except Exception:
                # The request in hand must not wait for ever on an actor that is
                # about to stop (see ``run``): it is refused like the queued ones.
                if command is not None:
                    refuse(command, self.stream_id)
                raise
            finally:
                self._turn.release()

    async def _handle(self, command: Command) -> None:
        now = trio.current_time()
        match command:
            case Emit():
                await self._publish(command)
            case Flush():
                await self._flush()
            case Attach():
                await self._attach(command, now)
            case Detach(sub_id=sub_id, reply=reply):
                self._remove(sub_id)
                reply.set(len(self._subscribers))
            case Incoming(message=AbortSignal(generation=generation)):
                self._counts.abort_signals += 1
                await self._obey_abort(generation)
            case Incoming(message=message):
                assert not isinstance(message, AbortSignal)
                for sub in list(self._subscribers.values()):
                    await self._apply(sub, sub.buffer.offer(message, now))
            case Continue(sub_id=sub_id, step=step):
                if (reader := self._subscribers.get(sub_id)) is not None:
                    await self._complete(reader, step)
            case Rearm():
                pass
            case Restored():
                await self._mark_lost()
                for sub in list(self._subscribers.values()):
                    await self._apply(sub, sub.buffer.resync(now))
            case Audit(reply=reply):
                try:
                    await self._mark_lost()
                finally:
                    reply.set(None)
            case Produce(generation=generation, early=early):
                self._producer = _Producer(generation, early)
            case StopProducing(generation=generation):
                if self._producer is not None and self._producer.generation == generation:
                    self._producer = None
            case OnAbort(generation=generation, callback=callback):
                if callback is None:
                    self._abort_callbacks.pop(generation, None)
                    self._abort_checks.pop(generation, None)
                else:
                    self._abort_callbacks[generation] = callback

    async def _obey_abort(self, generation: str) -> None:
        """Stop ``generation``'s generator, if it runs here, once Redis confirms that an
        abort claimed its turn; otherwise drop the signal, count and log it.

        The signal on the channel is a hint anyone who can PUBLISH may forge; the claim
        in the publish fence is the truth. A real signal always finds its claim:
        ``abort_job`` writes the claim (``claim_abort``) and only then publishes the
        signal, so the claim is on the server before any replica can hear the signal.
        (Unless a failover lost the claim with the writes it lost: the abort's terminal
        then ends the turn through the fence, and the generator's next emit is refused,
        which stops it.)

        A check that Redis did not answer decides nothing: the signal is neither obeyed
        (a forgery would win whenever a read fails) nor dropped (a real abort's stop
        would wait for the generator's next emit, which may never come). The actor asks
        again every ``ABORT_CHECK_RETRY_S`` (from its timers, so its readers are served
        meanwhile) until Redis answers or the generator leaves: the abort wins as soon
        as Redis is reachable again."""
        if generation not in self._abort_callbacks:
            self._abort_checks.pop(generation, None)
            return
        try:
            claimed = await self._abort_confirmed(generation)
        except (RedisConnectionError, OSError) as exc:
            logger.warning(
                "stream %s: could not check the abort of %s (%s); asking again",
                self.stream_id,
                generation,
                exc,
            )
            self._abort_checks[generation] = trio.current_time() + ABORT_CHECK_RETRY_S
            return
        self._abort_checks.pop(generation, None)
        if not claimed:
            self._totals.unconfirmed_aborts += 1
            logger.warning(
                "stream %s: dropped an abort signal for %s that no abort claimed",
                self.stream_id,
                generation,
            )
            return
        if (callback := self._abort_callbacks.get(generation)) is not None:
            callback()

    async def _abort_confirmed(self, generation: str) -> bool:
        """Whether an abort claimed ``generation``'s turn (asked of Redis)."""
        return await self._bus.abort_claimed(self.stream_id, generation)

    async def _publish(self, command: Emit) -> None:
        await self._publish_batch([command])

    async def _flush(self) -> None:
        """Publish the longest run of queued emits of one generation (at most
        :data:`MAX_BATCH_EVENTS`) in one bus call; another Flush takes the rest."""
        first = self._queued.popleft()
        batch = [first]
        queued = self._queued
        while queued and len(batch) < MAX_BATCH_EVENTS and queued[0].generation == first.generation:
            batch.append(queued.popleft())
        self._flush_told = False
        if queued:
            self._tell_flush()
        await self._publish_batch(batch)

    async def _publish_batch(self, batch: list[Emit]) -> None:
        """Publish ``batch`` (emits of one generation, in order) in one bus call and
        answer each emit; refused here, an emit is answered without publishing."""
        try:
            sending: list[Emit] = []
            for command in batch:
                refusal = self._refused_here(command)
                if refusal is None:
                    sending.append(command)
                else:
                    command.reply.set(refusal)
            if not sending:
                return
            try:
                outcomes = await self._publish_batch_on_bus(sending)
            except (RedisConnectionError, OSError) as exc:
                for command in sending:
                    command.reply.fail(exc)
                return
            except BaseException as exc:
                for command in sending:
                    command.reply.fail(exc)
                raise
            for command, outcome in zip(sending, outcomes, strict=True):
                if isinstance(outcome, Published):
                    self._note_published(command, outcome)
                command.reply.set(outcome)
        finally:
            for command in batch:
                if command.submitted:
                    self._room.release()

    def _note_published(self, command: Emit, outcome: Published) -> None:
        """What this replica remembers of an event it published: the floor, what its
        readers are owed, whether the turn ended, the producer's early buffer."""
        self._high_water = max(self._high_water, outcome.seq)
        self._remember_published(command.generation, outcome.seq)
        if command.kind is not EventKind.CHUNK:
            self._ended[command.generation] = None
            while len(self._ended) > REMEMBERED_GENERATIONS:
                del self._ended[next(iter(self._ended))]
        producer = self._producer
        if producer is not None and producer.generation == command.generation:
            # ASCII JSON: its length in characters is its size in bytes.
            producer.early.record(_as_event(command, outcome.seq), len(command.encoded))

    def _refused_here(self, command: Emit) -> PublishRefused | None:
        """The publish fence as this replica remembers it: a turn that published its
        terminal from here publishes nothing more. Redis enforces this too, unless a
        failover lost the terminal; then only this replica still knows the turn ended."""
        if command.generation not in self._ended:
            return None
        if command.kind is EventKind.CHUNK:
            return PublishRefused.JOB_ENDED
        return PublishRefused.TERMINAL_ALREADY_SENT

    async def _publish_batch_on_bus(self, batch: Sequence[Emit]) -> Sequence[PublishOutcome]:
        """Publish emits of one generation in one bus call (one event: ``publish``)."""
        if len(batch) == 1:
            return [await self._publish_on_bus(batch[0])]
        return await self._bus.publish_batch(
            self.stream_id, generation=batch[0].generation, events=batch, floor=self._floor()
        )

    async def _publish_on_bus(self, command: Emit) -> PublishOutcome:
        """Publish one event through the bus (fence, seq, log and fan-out in one step)."""
        return await self._bus.publish(
            self.stream_id,
            generation=command.generation,
            kind=command.kind,
            body=command.body,
            encoded_body=command.encoded,
            floor=self._floor(),
            by_abort=command.by_abort,
        )

    def _floor(self) -> int:
        """The lowest seq the shared counter may hand out next: past every seq this
        replica has seen. After Redis lost writes (a failover, a restart), the counter
        is pushed past them, so one seq never names two events."""
        return self._high_water + 1

    def _remember_published(self, generation: str, seq: int) -> None:
        self._published.pop(generation, None)
        self._published[generation] = seq
        while len(self._published) > REMEMBERED_GENERATIONS:
            del self._published[next(iter(self._published))]
        for sub in self._subscribers.values():
            if sub.buffer.generation == generation:
                sub.buffer.note_published(seq)

    async def _mark_lost(self) -> LostWrites | None:
        """Redis may have lost writes (a failover or restart behind a reconnect): push
        the counter past every seq this replica saw, and past a safety margin if the
        server changed, and log them as lost, so that no seq names two events and
        readers get a gap. The publish script does the same on every emit; this covers
        replicas that learn of it before their next emit, or never emit. Returns what
        it logged as lost, if anything."""
        try:
            return await self._bus.mark_lost(self.stream_id, floor=self._floor())
        except (RedisConnectionError, OSError) as exc:
            logger.warning("stream %s: lost-write check failed (%s)", self.stream_id, exc)
            return None

    async def _attach(self, command: Attach, now: float) -> None:
        buffer = self._reorder_buffer(command, now)
        if (published := self._published.get(command.generation)) is not None:
            buffer.note_published(published)
        sub = LocalSubscriber(
            command.sub_id, buffer, command.out, job_ended_at_attach=command.job_ended
        )
        self._subscribers[command.sub_id] = sub
        command.reply.set(None)
        await self._catch_up(sub, command, now)

    def _reorder_buffer(self, command: Attach, now: float) -> ReorderBuffer:
        """A new reader's reorder buffer: it orders the stream's traffic for the reader
        from its first seq on, and parks live traffic until the catch-up is done."""
        return ReorderBuffer(
            generation=command.generation,
            start_seq=command.start_seq,
            now=now,
            timeout=self._timings.reorder_timeout,
            capacity=self._timings.reorder_capacity,
            idle_probe=self._timings.idle_probe,
        )

    async def _catch_up(self, sub: LocalSubscriber, command: Attach, now: float) -> None:
        """Bring a new reader up to live: the producer's early buffer when the turn is
        produced here and the buffer is still open (no Redis read), then the chunk log
        from the reader's frontier. Live traffic parks meanwhile, so the boundary between
        what was published before the attachment and after it has no gap and no
        duplicate."""
        producer = self._producer
        if (
            producer is not None
            and producer.generation == command.generation
            and not producer.early.closed
        ):
            await self._apply(sub, sub.buffer.preload(producer.early.take(), now))
        if not sub.buffer.finished:
            await self._catch_up_from_log(sub, now)

    async def _catch_up_from_log(self, sub: LocalSubscriber, now: float) -> None:
        """The catch-up's log read: everything from the reader's frontier (after what
        the early buffer supplied) until the log is exhausted."""
        await self._apply(sub, sub.buffer.begin(now))

    async def _fire_timers(self, now: float) -> None:
        for generation, due in list(self._abort_checks.items()):
            if due <= now:
                await self._obey_abort(generation)
        for sub in list(self._subscribers.values()):
            if sub.wake_at is not None and sub.wake_at <= now:
                sub.wake_at = None
                await self._apply(sub, sub.buffer.on_timer(now))

    async def _apply(self, sub: LocalSubscriber, step: Step) -> None:
        """Carry out a core's step, feeding I/O results back until it needs nothing."""
        if self._carry_out(sub, step):
            await self._complete(sub, step)

    def _carry_out(self, sub: LocalSubscriber, step: Step) -> bool:
        """The part of a step that needs no I/O: its deliveries, its end, its timer.
        Returns whether the step asks for I/O too (see ``_complete``)."""
        try:
            for event in step.deliver:
                sub.out.send_nowait(event)
        except trio.BrokenResourceError:
            # The reader closed its end (it is detaching): nobody to deliver to.
            self._remove(sub.sub_id)
            return False
        if step.finished:
            self._remove(sub.sub_id)
            return False
        sub.wake_at = step.wake_at
        return step.fetch_from is not None or step.idle_and_empty

    async def _complete(self, sub: LocalSubscriber, step: Step) -> None:
        """Do the I/O ``step`` asks for (its other parts carried out), and carry out
        the steps that follow until one needs nothing more."""
        while True:
            if step.fetch_from is not None:
                try:
                    rows = await self._bus.read_log(
                        self.stream_id, from_seq=step.fetch_from, count=LOG_PAGE
                    )
                except (RedisConnectionError, OSError) as exc:
                    logger.warning("stream %s: log read failed (%s)", self.stream_id, exc)
                    step = sub.buffer.fetch_failed(trio.current_time())
                else:
                    if rows:
                        self._high_water = max(self._high_water, rows[-1].seq)
                    exhausted = len(rows) < LOG_PAGE
                    step = sub.buffer.apply_log(rows, exhausted=exhausted, now=trio.current_time())
                    if exhausted and sub.job_ended_at_attach and not step.finished:
                        sub.job_ended_at_attach = False
                        step.idle_and_empty = True
            else:  # idle and empty: has the turn ended without a word?
                ended = await self._judge_silence(sub)
                if ended is None:
                    return
                step = ended
            if not self._carry_out(sub, step):
                return

    async def _judge_silence(self, sub: LocalSubscriber) -> Step | None:
        """Has the silent reader's turn ended without a word? Carries out the I/O of a
        :class:`SilenceInquiry` (which decides) and returns the reader's next step, or
        ``None`` to wait for the next idle probe."""
        buffer = sub.buffer
        inquiry = SilenceInquiry(
            generation=buffer.generation,
            next_seq=buffer.next_seq,
            producer_timeout_ms=self._timings.producer_timeout_ms,
        )
        asked: SilenceRequest | SilenceOutcome = inquiry.start()
        while True:
            match asked:
                case ReadJob():
                    try:
                        job = await self._jobs.get_job(self.stream_id)
                    except (RedisConnectionError, OSError):
                        asked = inquiry.job_unreadable()
                    else:
                        asked = inquiry.job_read(job, now_ms=self._wall.now_ms())
                case CheckLostWrites():
                    lost = await self._mark_lost()
                    asked = inquiry.lost_writes_checked(None if lost is None else lost.last_seq)
                case FenceProducer(generation=generation):
                    await self._fence_silent_producer(generation)
                    asked = inquiry.producer_fenced()
                case ReadLogTail(from_seq=from_seq):
                    try:
                        rows = await self._bus.read_log(self.stream_id, from_seq=from_seq, count=1)
                    except (RedisConnectionError, OSError):
                        asked = inquiry.log_tail_unreadable()
                    else:
                        asked = inquiry.log_tail_read(found=bool(rows))
                case KeepWaiting():
                    return None
                case Resync():
                    return buffer.resync(trio.current_time())
                case EndWith(terminal=terminal):
                    return buffer.end_with(terminal, trio.current_time())
                case _:
                    assert_never(asked)

    async def _fence_silent_producer(self, generation: str) -> None:
        """Record the silent producer's turn as failed before telling readers so.

        A producer that was only slow (a stalled process, a heartbeat delayed past the
        timeout) would otherwise publish on, acknowledged, to readers who had already
        been told it was gone. Once the job is failed, the
        publish fence refuses its events instead. If the job moved on meanwhile (it
        ended, or another turn replaced it), nothing is written.
        """
        with contextlib.suppress(IllegalTransition, RedisConnectionError, OSError):
            await self._jobs.update_job(
                self.stream_id,
                JobUpdate(
                    status=JobStatus.ERROR, completed_at=self._wall.now_ms(), error=PRODUCER_LOST
                ),
                expected_generation=generation,
            )

    def _remove(self, sub_id: int) -> None:
        sub = self._subscribers.pop(sub_id, None)
        if sub is not None:
            self._totals.add(sub.buffer.statistics())
            sub.buffer.close()
            sub.out.close()


def _as_event(command: Emit, seq: int) -> SequencedEvent:
    if command.kind is EventKind.CHUNK:
        return Chunk(seq=seq, generation=command.generation, data=command.body)
    if command.kind is EventKind.DONE:
        return Done(seq=seq, generation=command.generation, data=command.body)
    return Failure(seq=seq, generation=command.generation, message=str(command.body))
