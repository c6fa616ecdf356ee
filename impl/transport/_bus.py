"""The wire below the stream actors: a ``Bus`` moves sequenced events between replicas.

Two implementations share every line above them (actors, manager):
:class:`~streamcheck.impl.transport._memory_bus.MemoryBus` (one process) and
:class:`~streamcheck.impl.transport._redis_bus.RedisBus` (LibreChat's Redis layout). A bus

* publishes one event atomically: allocates the next stream-wide seq, appends it to
  the chunk log and fans it out (``publish``); or several events of one generation in
  one atomic step, each fenced, sequenced and logged on its own, fanned out together
  (``publish_batch``, for coalesced emits);
* reads the chunk log by seq (``read_log``), the source of truth for catch-up and
  gap repair;
* repairs the counter after Redis lost writes (``mark_lost``), leaving a marker row;
* claims a turn for an abort (``claim_abort``), signals its generator
  (``publish_abort``) and tells whether a turn was claimed (``abort_claimed``);
* holds channel subscriptions by reference count, returning from ``acquire_channel``
  only once the subscription is acknowledged;
* hands every incoming message to the replica's :class:`Sink`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streamcheck.impl._log import LogRow, LostWrites
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.model import EmitKind, JSONValue

#: The kinds of sequenced event are the model's (chunk, done, error).
EventKind = EmitKind


class PublishRefused(enum.Enum):
    """Why the publish fence refused an event (nothing was allocated or sent)."""

    NO_JOB = "no_job"
    OTHER_GENERATION = "other_generation"
    JOB_ENDED = "job_ended"
    TERMINAL_ALREADY_SENT = "terminal_already_sent"
    #: An abort claimed the turn: only the abort's own terminal may be published.
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class Published:
    seq: int
    #: The shared counter was behind what this replica had seen: Redis lost writes.
    counter_regressed: bool = False


PublishOutcome = Published | PublishRefused


class OutgoingEvent(Protocol):
    """One event of a :meth:`Bus.publish_batch` (the actor's queued emits are these)."""

    @property
    def kind(self) -> EventKind: ...

    @property
    def body(self) -> JSONValue: ...

    @property
    def encoded(self) -> str:
        """``body`` as :func:`~streamcheck.impl.transport._envelope.encode_body` writes it."""

    @property
    def by_abort(self) -> bool: ...


class Sink(Protocol):
    def deliver(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None: ...

    def reads(self, stream_id: str) -> bool:
        """Whether the stream's sequenced events are read here (a local reader, or a
        request that may attach one, is there): a bus need not decode a batch of them
        for a stream that answers no."""

    def restored(self, stream_id: str) -> None: ...

    def malformed(self, stream_id: str | None, reason: str) -> None: ...


class Bus(Protocol):
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
        """Allocate a seq ``>= floor``, log and publish; or refuse without side effects.

        ``encoded_body`` is ``body`` as :func:`~streamcheck.impl.transport._envelope.encode_body`
        writes it, when the caller has it already (saves encoding it twice).
        ``by_abort`` marks an abort's terminal, the only event a claimed turn accepts.
        """

    async def publish_batch(
        self, stream_id: str, *, generation: str, events: Sequence[OutgoingEvent], floor: int
    ) -> list[PublishOutcome]:
        """Publish ``events`` of ``generation`` in order, in one atomic step: each is
        fenced, gets its own seq (the first ``>= floor``) and log entry as ``publish``
        would give it one after the other, and those that pass go out in one message.
        Returns each event's outcome."""

    async def claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        """Fence ``generation`` as aborted: from now on the publish fence refuses
        everything of it but the abort's terminal. ``None`` if claimed (now or by an
        earlier abort), else why not (the turn ended, sent its terminal, or is gone)."""

    async def publish_abort(self, stream_id: str, generation: str) -> None:
        """Tell ``generation``'s generator, on whichever replica, to stop (after
        :meth:`claim_abort`). Anyone who can publish on the channel can send this too."""

    async def abort_claimed(self, stream_id: str, generation: str) -> bool:
        """Whether an abort claimed ``generation``'s turn (:meth:`claim_abort`): what a
        replica asks before it obeys an abort signal, which may be forged."""

    async def read_log(self, stream_id: str, *, from_seq: int, count: int) -> list[LogRow]:
        """Log rows with ``seq >= from_seq``, ascending, at most ``count``."""

    async def mark_lost(self, stream_id: str, *, floor: int) -> LostWrites | None:
        """If the counter is below ``floor`` (Redis lost writes this replica saw), push
        it there and log which seqs are gone; returns them, or ``None`` if none were."""

    async def acquire_channel(self, stream_id: str) -> None: ...

    async def release_channel(self, stream_id: str) -> None: ...

    def attach_sink(self, sink: Sink) -> None: ...
