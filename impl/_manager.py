"""``GenerationJobManager``: the public face of one replica (LibreChat's manager).

A generator calls ``create_job``, then ``emit_chunk`` ... and one of ``emit_done`` /
``emit_error``, then ``complete_job``. A generator that need not wait for each chunk's
durability (tokens arrive in bursts) calls ``submit_chunk`` instead, which queues the
chunk and returns a :class:`QueuedChunk` to await later, or never: queued chunks are
published together (one script call, one message), each with its own seq and log
entry, and ``emit_done`` / ``emit_error`` are published after every chunk queued
before them. Clients call ``subscribe`` or ``resume`` on any
replica and ``abort_job`` on any replica. Example::

    job = await manager.create_job("conv-1", "user-1")
    await manager.emit_chunk("conv-1", {"event": "on_message_delta", "data": ...})
    await manager.emit_done("conv-1", {"final": True})
    await manager.complete_job("conv-1")

Differences from the seed, each fixing a bug of docs/librechat.md: subscribers are marked only
after SUBSCRIBE is acknowledged (#2); state survives disconnects and abort listeners
keep the channel (#3, #17); errors and final events are kept for late subscribers
(#4); any replica can serve and abort any stream (#5, #7); resume is a snapshot *up to
a seq* plus everything after it, so nothing is replayed twice (#6); one shared,
monotonic counter with a floor (#8, #9, #10); catch-up is deferred until the frontier
is known (#11); only attached subscribers run reorder buffers (#12); the early
buffer is bounded (#13); every turn has a generation id that fences the previous
turn's traffic and cleanup (#16, #20).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from streamcheck.impl._content import aggregate_content, collect_run_steps, content_text
from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._errors import IllegalTransition, StreamAccessDenied
from streamcheck.impl._ids import validate_stream_id, validate_user_id
from streamcheck.impl._log import LostWrites
from streamcheck.impl._seams import IdSource, WallClock
from streamcheck.impl._types import (
    AbortOutcome,
    AbortResult,
    JobStatus,
    JobUpdate,
    ResumeState,
    SerializableJobData,
    UserMessage,
)
from streamcheck.impl.jobstore._protocol import JobStore
from streamcheck.impl.transport._actor import LOG_PAGE
from streamcheck.impl.transport._bus import Bus, Published, PublishRefused
from streamcheck.impl.transport._commands import Acknowledgement
from streamcheck.impl.transport._transport import EventTransport, Subscription
from streamcheck.model import Chunk, JSONValue

logger = logging.getLogger(__name__)

#: The error a turn ends with when it could not be started completely.
START_FAILED: Final = "generation failed to start: Redis connection lost during setup"


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    cleanup_interval_s: float = 60.0
    #: How often a live generation refreshes ``last_active_at`` (producer liveness).
    heartbeat_interval_s: float = 10.0
    early_buffer_max_events: int = 5_000
    early_buffer_max_bytes: int = 8 * 1024 * 1024


class StopReason(enum.StrEnum):
    """Why a generator was told to stop (:attr:`GenerationJob.stop_reason`)."""

    #: A user's abort, pressed on any replica, holds the turn: its terminal ends it.
    ABORTED = "aborted"
    #: The turn ended without this generator (its job ended, e.g. judged lost).
    TURN_ENDED = "turn_ended"
    #: A newer turn replaced this one, or its job vanished.
    REPLACED = "replaced"
    #: The turn could not start (its abort listener could not be registered).
    START_FAILED = "start_failed"


@dataclass(eq=False, slots=True)
class GenerationJob:
    """The generator's handle on its job. ``aborted`` fires when the generator must stop,
    on an abort from anywhere or because the turn ended; ``stop_reason`` says which."""

    stream_id: str
    user_id: str
    generation: str
    start_seq: int
    aborted: trio.Event = field(default_factory=trio.Event)
    final_event: JSONValue = None
    error: str | None = None
    stop_reason: StopReason | None = None
    #: This generator's own done or error was published (the fence let it end the turn).
    published_terminal: bool = False

    @property
    def is_aborted(self) -> bool:
        return self.aborted.is_set()

    def stop(self, reason: StopReason) -> None:
        """Tell the generator to stop; the first reason given is the one kept."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.aborted.set()

    def stop_by_abort(self) -> None:
        self.stop(StopReason.ABORTED)


class QueuedChunk:
    """A chunk queued by :meth:`GenerationJobManager.submit_chunk`. Awaiting it gives
    what ``emit_chunk`` returns: the receipt (with the seq), or ``None`` if the chunk
    was dropped because the turn was aborted, had ended or was superseded. If the
    publish failed (a lost connection), awaiting it raises that error: the chunk may or
    may not have been published."""

    __slots__ = ("_acknowledgement", "_job", "_manager", "_on_answer")

    def __init__(
        self,
        manager: GenerationJobManager,
        job: GenerationJob | None,
        on_answer: Callable[[QueuedChunk], None] | None,
    ) -> None:
        self._manager = manager
        #: ``None``: dropped before it was queued.
        self._job = job
        self._on_answer = on_answer
        self._acknowledgement = Acknowledgement(self) if job is not None else None

    @property
    def answered(self) -> bool:
        return self._acknowledgement is None or self._acknowledgement.answered

    def result(self) -> Published | None:
        """The answer, once given (see :attr:`answered`)."""
        if self._acknowledgement is None:
            return None
        outcome = self._acknowledgement.result()
        return outcome if isinstance(outcome, Published) else None

    async def wait(self) -> Published | None:
        if self._acknowledgement is not None:
            await self._acknowledgement.wait()
        return self.result()

    def __await__(self) -> Generator[Any, None, Published | None]:
        return self.wait().__await__()

    def acknowledged(self, acknowledgement: Acknowledgement) -> None:
        """The actor answered: a refusal stops the generator, as ``emit_chunk``'s does."""
        if self._job is not None and (outcome := acknowledgement.outcome) is not None:
            self._manager._published(self._job, outcome)
        if self._on_answer is not None:
            try:
                self._on_answer(self)
            except Exception:
                # The caller's callback runs in the stream's actor: its failure must not
                # be the stream's.
                logger.exception("on_answer callback of a queued chunk failed")


class GenerationJobManager:
    def __init__(
        self,
        *,
        job_store: JobStore,
        transport: EventTransport,
        bus: Bus,
        wall_clock: WallClock,
        ids: IdSource,
        settings: ManagerSettings | None = None,
    ) -> None:
        self.job_store = job_store
        self.transport = transport
        self._bus = bus
        self._wall = wall_clock
        self._ids = ids
        self._settings = settings if settings is not None else ManagerSettings()
        self._runtimes: dict[str, GenerationJob] = {}

    # -- generator side -----------------------------------------------------------

    async def create_job(
        self, stream_id: str, user_id: str, conversation_id: str | None = None
    ) -> GenerationJob:
        """Start a new turn on ``stream_id``; a previous turn on it is superseded."""
        validate_stream_id(stream_id)
        validate_user_id(user_id)
        previous = self._runtimes.pop(stream_id, None)
        if previous is not None:
            # Its generator must stop: emits go by stream id, so they would be the new
            # turn's, and an abort of the old turn can no longer reach it.
            previous.stop(StopReason.REPLACED)
            await self._retire(previous)
        # Before the new turn reads its start seq: if a failover lost the end of the
        # previous turn, its readers must learn that from the log, not from silence.
        await self.transport.check_lost_writes(stream_id)
        generation = self._ids.new_id()
        data = await self.job_store.create_job(
            stream_id, user_id, conversation_id, generation_id=generation
        )
        job = GenerationJob(stream_id, user_id, generation, data.start_seq)
        self._runtimes[stream_id] = job
        self.transport.start_producing(stream_id, generation, self._early_buffer())
        try:
            await self.transport.on_abort(stream_id, generation, job.stop_by_abort)
        except BaseException:
            # Without its abort listener the turn cannot be stopped from elsewhere, so it
            # must not start, and no runtime may stay behind: it would heart-beat a job
            # that no generator will ever finish.
            if self._runtimes.get(stream_id) is job:
                del self._runtimes[stream_id]
            job.stop(StopReason.START_FAILED)
            self.transport.stop_producing(stream_id, generation)
            # (An abort may have ended the turn meanwhile: then it stays aborted.)
            with (
                trio.CancelScope(shield=True),
                contextlib.suppress(ConnectionError, IllegalTransition),
            ):
                await self.job_store.update_job(
                    stream_id,
                    JobUpdate(
                        status=JobStatus.ERROR,
                        completed_at=self._wall.now_ms(),
                        error=START_FAILED,
                    ),
                    expected_generation=generation,
                )
            raise
        return job

    async def emit_chunk(self, stream_id: str, event: JSONValue) -> Published | None:
        """Publish one chunk: its receipt (with the seq), or ``None`` if it was dropped
        because the turn was aborted, has ended or was superseded."""
        job = self._runtimes.get(stream_id)
        if job is None or job.is_aborted:
            return None
        # A dict is checked first: isinstance against the Mapping ABC costs more.
        if (type(event) is dict or isinstance(event, Mapping)) and event.get("created") is True:
            await self._record_created(job, event)
        outcome = await self.transport.emit_chunk(stream_id, job.generation, event)
        return self._published(job, outcome)

    async def submit_chunk(
        self,
        stream_id: str,
        event: JSONValue,
        *,
        on_answer: Callable[[QueuedChunk], None] | None = None,
    ) -> QueuedChunk:
        """Queue one chunk for publishing and return without waiting for it (a coalesced
        emit); await the :class:`QueuedChunk` for what ``emit_chunk`` would have
        returned. Waits only while the stream has the most chunks in flight that it
        holds (``ActorTimings.max_in_flight``). ``on_answer`` runs as soon as the
        chunk is published or dropped, awaited or not. A refusal stops the generator
        as ``emit_chunk``'s does."""
        job = self._runtimes.get(stream_id)
        if job is None or job.is_aborted:
            dropped = QueuedChunk(self, None, on_answer)
            if on_answer is not None:
                on_answer(dropped)
            return dropped
        if (type(event) is dict or isinstance(event, Mapping)) and event.get("created") is True:
            await self._record_created(job, event)
        queued = QueuedChunk(self, job, on_answer)
        assert queued._acknowledgement is not None
        await self.transport.submit_chunk(stream_id, job.generation, event, queued._acknowledgement)
        return queued

    async def emit_done(self, stream_id: str, final_event: JSONValue) -> Published | None:
        job = self._runtimes.get(stream_id)
        if job is None:
            return None
        job.final_event = final_event
        await self.job_store.update_job(
            stream_id,
            JobUpdate(final_event=json.dumps(final_event)),
            expected_generation=job.generation,
        )
        outcome = await self.transport.emit_done(stream_id, job.generation, final_event)
        return self._published_terminal(job, outcome)

    async def emit_error(self, stream_id: str, message: str) -> Published | None:
        job = self._runtimes.get(stream_id)
        if job is None:
            return None
        job.error = message
        await self._keep_error(job, message)
        outcome = await self.transport.emit_error(stream_id, job.generation, message)
        return self._published_terminal(job, outcome)

    async def complete_job(self, stream_id: str, error: str | None = None) -> None:
        """Record the end of the turn. The job stays until its TTL for late subscribers."""
        job = self._runtimes.pop(stream_id, None)
        if job is None:
            return
        if job.stop_reason is StopReason.ABORTED and not job.published_terminal:
            # An abort holds the turn: it records the end itself, after its terminal is on
            # the log. A terminal status written here first would let a silent reader take
            # the job for the turn's end and make up a terminal the abort's then contradicts.
            await self._retire(job)
            return
        status = JobStatus.ERROR if (error or job.error) else JobStatus.COMPLETE
        if job.is_aborted:
            status = JobStatus.ABORTED
        await self._record_end(job, status, error)
        await self._retire(job)

    def _early_buffer(self) -> EarlyBuffer:
        """The new turn's early buffer: what it publishes before its first local reader
        attaches, replayed to that reader without a log read. It is bounded: a turn that
        nobody reads here must not grow the heap without limit."""
        return EarlyBuffer(
            max_events=self._settings.early_buffer_max_events,
            max_bytes=self._settings.early_buffer_max_bytes,
        )

    async def _keep_error(self, job: GenerationJob, message: str) -> None:
        """Store the turn's error on its job before it is published: a reader that
        arrives after the turn ended learns the error from the job."""
        await self.job_store.update_job(
            job.stream_id, JobUpdate(error=message), expected_generation=job.generation
        )

    async def _record_end(self, job: GenerationJob, status: JobStatus, error: str | None) -> None:
        """Record how the turn ended. The job is kept until its TTL, so late readers
        find the final event or the error and the chunk log with it."""
        try:
            await self.job_store.update_job(
                job.stream_id,
                JobUpdate(status=status, completed_at=self._wall.now_ms(), error=error),
                expected_generation=job.generation,
            )
        except IllegalTransition:
            # An abort from another replica ended the turn first (its terminal won the
            # publish fence), or the job was judged lost; the job already holds that outcome.
            job.stop(StopReason.TURN_ENDED)

    def _published_terminal(
        self, job: GenerationJob, outcome: Published | PublishRefused
    ) -> Published | None:
        if isinstance(outcome, Published):
            job.published_terminal = True
        return self._published(job, outcome)

    def _published(
        self, job: GenerationJob, outcome: Published | PublishRefused
    ) -> Published | None:
        if isinstance(outcome, Published):
            return outcome
        if outcome in (PublishRefused.OTHER_GENERATION, PublishRefused.NO_JOB):
            # The turn was replaced or its job vanished: stop the generator.
            job.stop(StopReason.REPLACED)
        elif outcome is PublishRefused.ABORTED:
            job.stop(StopReason.ABORTED)
        elif outcome in (PublishRefused.JOB_ENDED, PublishRefused.TERMINAL_ALREADY_SENT):
            # The turn ended without this generator (an abort's terminal, or judged lost).
            job.stop(StopReason.TURN_ENDED)
        return None

    async def _record_created(self, job: GenerationJob, event: Mapping[str, JSONValue]) -> None:
        # Awaited before the publish so a replica that sees `created` also sees the
        # user message in the job (docs/librechat.md, bug 7).
        message = event.get("message")
        if not isinstance(message, Mapping) or not isinstance(message.get("messageId"), str):
            return
        parent = message.get("parentMessageId")
        conversation = message.get("conversationId")
        text = message.get("text")
        user_message = UserMessage(
            message_id=str(message["messageId"]),
            parent_message_id=parent if isinstance(parent, str) else None,
            conversation_id=conversation if isinstance(conversation, str) else None,
            text=text if isinstance(text, str) else None,
        )
        await self.job_store.update_job(
            job.stream_id,
            JobUpdate(user_message=user_message),
            expected_generation=job.generation,
        )

    async def _retire(self, job: GenerationJob) -> None:
        self.transport.stop_producing(job.stream_id, job.generation)
        with trio.CancelScope(shield=True):
            await self.transport.remove_abort(job.stream_id, job.generation)

    # -- client side ----------------------------------------------------------------

    async def _owned_job(self, stream_id: str, user_id: str) -> SerializableJobData:
        validate_stream_id(stream_id)
        validate_user_id(user_id)
        job = await self.job_store.get_job(stream_id)
        if job is None or job.user_id != user_id:
            raise StreamAccessDenied()
        return job

    async def subscribe(self, stream_id: str, user_id: str) -> Subscription:
        """Attach to the current turn from its first event (or its stored end)."""
        job = await self._owned_job(stream_id, user_id)
        return await self.transport.subscribe(
            stream_id,
            generation=job.generation_id,
            start_seq=job.start_seq,
            job_ended=job.status.is_terminal,
        )

    async def resume(self, stream_id: str, user_id: str) -> tuple[ResumeState, Subscription]:
        """A snapshot of the turn so far plus a subscription to everything after it."""
        job = await self._owned_job(stream_id, user_id)
        # The snapshot stops before seqs Redis lost, so the reader is told of them by a
        # Gap in the live part instead of receiving a snapshot with a silent hole.
        chunks = await self._logged_chunks(job, stop_at_lost=True)
        through = chunks[-1].seq if chunks else None
        state = ResumeState(
            stream_id=stream_id,
            generation_id=job.generation_id,
            through_seq=through,
            aggregated_content=aggregate_content(c.data for c in chunks),
            folded_seqs=tuple(c.seq for c in chunks),
            run_steps=collect_run_steps(c.data for c in chunks),
            user_message=job.user_message,
            response_message_id=job.response_message_id,
            conversation_id=job.conversation_id,
            sender=job.sender,
        )
        subscription = await self.transport.subscribe(
            stream_id,
            generation=job.generation_id,
            start_seq=through + 1 if through is not None else job.start_seq,
            job_ended=job.status.is_terminal,
            resume=True,
        )
        return state, subscription

    async def _logged_chunks(
        self, job: SerializableJobData, *, stop_at_lost: bool = False
    ) -> list[Chunk]:
        """The turn's chunks from the log, in order, up to (not including) its terminal
        (and with ``stop_at_lost``, up to the first seqs Redis lost)."""
        chunks: list[Chunk] = []
        cursor = job.start_seq
        while True:
            rows = await self._bus.read_log(job.stream_id, from_seq=cursor, count=LOG_PAGE)
            for row in rows:
                if isinstance(row, LostWrites):
                    if stop_at_lost and row.last_seq >= job.start_seq:
                        return chunks
                    continue
                if row.generation != job.generation_id:
                    continue
                if not isinstance(row, Chunk):
                    return chunks  # the terminal is delivered live, never folded
                chunks.append(row)
            if len(rows) < LOG_PAGE:
                return chunks
            cursor = rows[-1].seq + 1

    async def abort_job(self, stream_id: str, user_id: str) -> AbortResult:
        """Stop the turn wherever it runs and publish its aborted final event.

        The answer says what happened: ``ABORTED``, ``ALREADY_TERMINAL`` (it ended
        first) or ``NO_SUCH_STREAM`` (it vanished while we aborted). A stream that does
        not exist or is not the caller's raises :class:`StreamAccessDenied`.
        """
        job = await self._owned_job(stream_id, user_id)
        usage = self.job_store.get_collected_usage(stream_id)
        if job.status.is_terminal:
            return AbortResult(outcome=AbortOutcome.ALREADY_TERMINAL, job=job)
        refused = await self._accept_abort(job)
        if refused in (PublishRefused.NO_JOB, PublishRefused.OTHER_GENERATION):
            return AbortResult(outcome=AbortOutcome.NO_SUCH_STREAM)
        if refused is not None:  # the turn ended or sent its terminal first
            current = await self.job_store.get_job(stream_id)
            return AbortResult(outcome=AbortOutcome.ALREADY_TERMINAL, job=current)
        # The claim refuses the generator's chunks from here on: the content is final.
        content = await self.job_store.get_content_parts(stream_id)
        if not content:
            content = aggregate_content(c.data for c in await self._logged_chunks(job))
        final_event = _abort_final_event(job, content)
        outcome = await self.transport.emit_done(
            stream_id, job.generation_id, final_event, by_abort=True
        )
        if outcome is PublishRefused.TERMINAL_ALREADY_SENT:
            # Another abort of the same turn published the terminal first.
            current = await self.job_store.get_job(stream_id)
            return AbortResult(outcome=AbortOutcome.ALREADY_TERMINAL, job=current)
        if outcome in (PublishRefused.NO_JOB, PublishRefused.OTHER_GENERATION):
            return AbortResult(outcome=AbortOutcome.NO_SUCH_STREAM)
        # The generator's own completion may record its status between our publish and
        # this write. Our Done is the terminal subscribers received; the job is ended
        # either way.
        with contextlib.suppress(IllegalTransition):
            await self.job_store.update_job(
                stream_id,
                JobUpdate(
                    status=JobStatus.ABORTED,
                    completed_at=self._wall.now_ms(),
                    final_event=json.dumps(final_event),
                ),
                expected_generation=job.generation_id,
            )
        return AbortResult(
            outcome=AbortOutcome.ABORTED,
            job=job,
            content=content,
            text=content_text(content),
            final_event=final_event,
            terminal_seq=outcome.seq if isinstance(outcome, Published) else None,
            collected_usage=usage,
        )

    async def _accept_abort(self, job: SerializableJobData) -> PublishRefused | None:
        """Accept the abort, then tell the generator: first the claim fences the turn
        as aborted (from then on the publish fence refuses the generator's chunks and
        its own done or error), then the generator is signalled. The other order lets
        a generator that reacts to the signal with its own terminal win the race, and
        the abort's final event would be lost. ``None`` once accepted, else why not."""
        refused = await self.transport.claim_abort(job.stream_id, job.generation_id)
        if refused is None:
            await self._signal_generator(job)
        return refused

    async def _signal_generator(self, job: SerializableJobData) -> None:
        """Tell the turn's generator to stop, on whichever replica it runs."""
        await self.transport.emit_abort(job.stream_id, job.generation_id)
        local = self._runtimes.get(job.stream_id)
        if local is not None and local.generation == job.generation_id:
            local.stop_by_abort()

    async def get_job(self, stream_id: str) -> SerializableJobData | None:
        return await self.job_store.get_job(validate_stream_id(stream_id))

    def local_job(self, stream_id: str) -> GenerationJob | None:
        """The turn of ``stream_id`` this replica generates, if any: its generator's view
        (aborted, stop reason), which the shared job store does not hold."""
        return self._runtimes.get(stream_id)

    # -- housekeeping ------------------------------------------------------------------

    async def cleanup(self) -> int:
        """Expire jobs, retire runtimes whose job is gone, stop orphaned actors."""
        removed = await self.job_store.cleanup()
        for stream_id, job in list(self._runtimes.items()):
            current = await self.job_store.get_job(stream_id)
            if current is None or current.generation_id != job.generation:
                # Identity check: never retire a replacement turn (docs/librechat.md, bug 20).
                if self._runtimes.get(stream_id) is job:
                    del self._runtimes[stream_id]
                job.stop(StopReason.REPLACED)
                await self._retire(job)
        for stream_id in self.transport.get_tracked_stream_ids():
            if stream_id in self._runtimes or not self.transport.is_idle(stream_id):
                continue
            await self._forget_idle_stream(stream_id)
        return removed

    async def _forget_idle_stream(self, stream_id: str) -> None:
        """Stop the actor of a stream nobody uses on this replica any more: a later
        subscribe or emit starts a fresh one. The shared counter stays: seqs are
        monotonic across turns, so no reader can mistake a new turn's seq for an old
        one's."""
        self.transport.cleanup(stream_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic cleanup and producer heartbeats, until cancelled."""
        task_status.started()
        next_cleanup = trio.current_time() + self._settings.cleanup_interval_s
        while True:
            await trio.sleep(self._settings.heartbeat_interval_s)
            for stream_id, job in list(self._runtimes.items()):
                if job.is_aborted:
                    # Nobody generates any more: a heartbeat would keep readers waiting
                    # for ever if Redis lost the abort's writes.
                    continue
                try:
                    await self.job_store.record_activity(stream_id, job.generation)
                except ConnectionError as exc:
                    logger.warning("heartbeat for %s failed: %s", stream_id, exc)
            if trio.current_time() >= next_cleanup:
                next_cleanup = trio.current_time() + self._settings.cleanup_interval_s
                try:
                    await self.cleanup()
                except ConnectionError as exc:
                    logger.warning("cleanup failed: %s", exc)


def _abort_final_event(job: SerializableJobData, content: list[JSONValue]) -> JSONValue:
    """LibreChat's abort final event (docs/design.md, "Abort")."""
    early = not content and job.response_message_id is None
    request: JSONValue = None
    if job.user_message is not None:
        request = {
            "messageId": job.user_message.message_id,
            "parentMessageId": job.user_message.parent_message_id,
            "conversationId": job.user_message.conversation_id,
            "text": job.user_message.text,
        }
    response_id = job.response_message_id or (
        f"{job.user_message.message_id}_" if job.user_message is not None else None
    )
    return {
        "final": True,
        "aborted": True,
        "earlyAbort": early,
        "conversation": None if early else {"conversationId": job.conversation_id},
        "requestMessage": request,
        "responseMessage": {
            "messageId": response_id,
            "content": content,
            "sender": job.sender or "AI",
            "unfinished": True,
        },
    }
