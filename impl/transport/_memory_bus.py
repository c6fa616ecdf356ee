"""In-process bus: a :class:`MemoryHub` plays the Redis server, one :class:`MemoryBus`
per replica plays its connections.

The hub keeps per-stream counters and chunk logs and applies the same publish fence as
the Redis script, so replicas in one process behave exactly like replicas on Redis
(minus the network faults, which the simulation adds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamcheck.impl._log import LogRow, LostWrites
from streamcheck.impl._status import JobStatus
from streamcheck.impl.transport._bus import (
    EventKind,
    OutgoingEvent,
    Published,
    PublishOutcome,
    PublishRefused,
    Sink,
)
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.model import Chunk, Done, Failure, JSONValue


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What the publish fence needs to know about a stream's current job."""

    generation: str
    status: JobStatus


JobLookup = Callable[[str], JobFacts | None]


@dataclass(slots=True)
class _StreamLog:
    next_seq: int = 0
    entries: list[LogRow] = field(default_factory=list)
    terminal_generations: set[str] = field(default_factory=set)
    #: Generations an abort has claimed (the script's ``abortClaimed`` on the job).
    aborted_generations: set[str] = field(default_factory=set)


class MemoryHub:
    """Shared state of all in-process replicas (counters, logs, subscriptions)."""

    def __init__(self, job_lookup: JobLookup | None = None, *, max_log_entries: int = 100_000):
        self._job_lookup = job_lookup
        self._streams: dict[str, _StreamLog] = {}
        self._subscribers: dict[str, list[MemoryBus]] = {}
        self._max_log_entries = max_log_entries

    def bind_jobs(self, job_lookup: JobLookup) -> None:
        self._job_lookup = job_lookup

    def counter_now(self, stream_id: str) -> int:
        log = self._streams.get(stream_id)
        return log.next_seq if log is not None else 0

    def log_length(self, stream_id: str) -> int:
        """How many entries the stream's chunk log holds (for inspection)."""
        log = self._streams.get(stream_id)
        return len(log.entries) if log is not None else 0

    def forget(self, stream_id: str) -> None:
        """Drop a stream's log (its job expired); the counter survives, as in Redis."""
        log = self._streams.get(stream_id)
        if log is not None:
            log.entries.clear()

    def _publish(
        self,
        stream_id: str,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        floor: int,
        by_abort: bool,
    ) -> PublishOutcome:
        log = self._streams.setdefault(stream_id, _StreamLog())
        refusal = self._fence(stream_id, generation, kind, log, by_abort=by_abort)
        if refusal is not None:
            return refusal
        regressed = log.next_seq < floor
        self._raise_to_floor(log, floor)
        seq = log.next_seq
        log.next_seq = seq + 1
        event: SequencedEvent
        if kind is EventKind.CHUNK:
            event = Chunk(seq=seq, generation=generation, data=body)
        elif kind is EventKind.DONE:
            event = Done(seq=seq, generation=generation, data=body)
            log.terminal_generations.add(generation)
        else:
            event = Failure(seq=seq, generation=generation, message=str(body))
            log.terminal_generations.add(generation)
        log.entries.append(event)
        if len(log.entries) > self._max_log_entries:
            del log.entries[: len(log.entries) - self._max_log_entries]
        self._fan_out(stream_id, event)
        return Published(seq=seq, counter_regressed=regressed)

    def _mark_lost(self, stream_id: str, floor: int) -> LostWrites | None:
        return self._raise_to_floor(self._streams.setdefault(stream_id, _StreamLog()), floor)

    def _raise_to_floor(self, log: _StreamLog, floor: int) -> LostWrites | None:
        """The Redis script's ``raise_to_floor`` (impl/transport/_lua.py). A hub never
        loses writes, so this only acts on a floor from a replica of another hub."""
        if log.next_seq >= floor:
            return None
        first = log.next_seq
        if log.entries:
            first = max(first, log.entries[-1].seq + 1)
        log.next_seq = floor
        if first > floor - 1:
            return None
        lost = LostWrites(first_seq=first, last_seq=floor - 1)
        log.entries.append(lost)
        return lost

    def _claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        """The Redis ``claim_abort`` script (impl/transport/_lua.py)."""
        log = self._streams.setdefault(stream_id, _StreamLog())
        refusal = self._fence(stream_id, generation, EventKind.DONE, log, by_abort=True)
        if refusal is not None:
            return refusal
        facts = self._job_lookup(stream_id) if self._job_lookup is not None else None
        if facts is None or facts.status is not JobStatus.RUNNING:
            return PublishRefused.JOB_ENDED
        log.aborted_generations.add(generation)
        return None

    def _abort_claimed(self, stream_id: str, generation: str) -> bool:
        """The Redis ``abort_claimed`` script (impl/transport/_lua.py): the claim as
        the publish fence sees it."""
        log = self._streams.get(stream_id)
        if log is None:
            return False
        refusal = self._fence(stream_id, generation, EventKind.CHUNK, log, by_abort=False)
        return refusal is PublishRefused.ABORTED

    def _fence(
        self,
        stream_id: str,
        generation: str,
        kind: EventKind,
        log: _StreamLog,
        *,
        by_abort: bool,
    ) -> PublishRefused | None:
        """The same rules as the Redis publish script (impl/transport/_lua.py)."""
        facts = self._job_lookup(stream_id) if self._job_lookup is not None else None
        if facts is None:
            return PublishRefused.NO_JOB
        if facts.generation != generation:
            return PublishRefused.OTHER_GENERATION
        if generation in log.aborted_generations and not by_abort:
            return PublishRefused.ABORTED
        if kind is EventKind.CHUNK and (
            facts.status is not JobStatus.RUNNING or generation in log.terminal_generations
        ):
            return PublishRefused.JOB_ENDED
        if kind is not EventKind.CHUNK and generation in log.terminal_generations:
            return PublishRefused.TERMINAL_ALREADY_SENT
        if kind is not EventKind.CHUNK and facts.status is not JobStatus.RUNNING and not by_abort:
            # Ended without a terminal on the log (a reader judged the producer lost).
            return PublishRefused.JOB_ENDED
        return None

    def _fan_out(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None:
        for bus in list(self._subscribers.get(stream_id, ())):
            bus._receive(stream_id, message)

    def _read(self, stream_id: str, from_seq: int, count: int) -> list[LogRow]:
        log = self._streams.get(stream_id)
        if log is None:
            return []
        # Entries are in seq order; bisect would be faster but logs are short-lived.
        rows = [e for e in log.entries if e.seq >= from_seq]
        return rows[:count]

    def _subscribe(self, stream_id: str, bus: MemoryBus) -> None:
        self._subscribers.setdefault(stream_id, []).append(bus)

    def _unsubscribe(self, stream_id: str, bus: MemoryBus) -> None:
        buses = self._subscribers.get(stream_id)
        if buses is not None and bus in buses:
            buses.remove(bus)
            if not buses:
                del self._subscribers[stream_id]


class MemoryBus:
    """One replica's view of a :class:`MemoryHub`."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._sink: Sink | None = None
        self._refs: dict[str, int] = {}

    def attach_sink(self, sink: Sink) -> None:
        self._sink = sink

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
        # Events stay Python objects here: ``encoded_body`` is not needed.
        return self._hub._publish(stream_id, generation, kind, body, floor, by_abort)

    async def publish_batch(
        self, stream_id: str, *, generation: str, events: Sequence[OutgoingEvent], floor: int
    ) -> list[PublishOutcome]:
        # One after the other with no checkpoint between them: atomic, as in Redis.
        return [
            self._hub._publish(stream_id, generation, e.kind, e.body, floor, e.by_abort)
            for e in events
        ]

    async def claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        return self._hub._claim_abort(stream_id, generation)

    async def publish_abort(self, stream_id: str, generation: str) -> None:
        self._hub._fan_out(stream_id, AbortSignal(generation=generation))

    async def abort_claimed(self, stream_id: str, generation: str) -> bool:
        return self._hub._abort_claimed(stream_id, generation)

    async def read_log(self, stream_id: str, *, from_seq: int, count: int) -> list[LogRow]:
        return self._hub._read(stream_id, from_seq, count)

    async def mark_lost(self, stream_id: str, *, floor: int) -> LostWrites | None:
        return self._hub._mark_lost(stream_id, floor)

    async def acquire_channel(self, stream_id: str) -> None:
        count = self._refs.get(stream_id, 0)
        if count == 0:
            self._hub._subscribe(stream_id, self)
        self._refs[stream_id] = count + 1

    async def release_channel(self, stream_id: str) -> None:
        count = self._refs.get(stream_id, 0)
        if count <= 1:
            self._refs.pop(stream_id, None)
            if count == 1:
                self._hub._unsubscribe(stream_id, self)
        else:
            self._refs[stream_id] = count - 1

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._refs)

    def _receive(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None:
        if self._sink is not None:
            self._sink.deliver(stream_id, message)
