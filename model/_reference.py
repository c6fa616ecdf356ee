"""The executable reference model: what each session is owed.

The rules, in the words of the specification:

* A stream id has one seq space shared by all its generations (turns); a
  generation's events have seq >= its ``GenerationStarted.start_seq``.
* An ``Emitted`` record with outcome OK is a fact: that event exists at that seq.
  FAIL means nothing was published; INDETERMINATE means it may have been.
* A session opened on (stream, generation) with ``first_seq`` is **owed** every
  OK-emitted event of that generation with seq >= ``first_seq``, in seq order, each
  once, then one terminal, then nothing. A resume's ``snapshot_seqs`` must be exactly
  the OK-emitted chunk seqs in ``[start_seq, first_seq)``.

:func:`index_history` reads a history once (linear time) into a
:class:`HistoryIndex`; the checker and :func:`expected_for_session` both work from
it. Example, for a harness that wants to know what a reader still waits for::

    expectation = expected_for_session(history, "s1")
    assert expectation.still_owed == ()   # everything arrived (or was gap-signalled)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import final

from streamcheck.model._events import Chunk, Done, Failure, Gap, StreamEvent
from streamcheck.model._history import (
    AbortRequested,
    Delivered,
    EmitKind,
    Emitted,
    FaultInjected,
    FaultKind,
    FaultsRecorded,
    GenerationStarted,
    GeneratorStopped,
    Healed,
    History,
    JobObserved,
    OpOutcome,
    Record,
    SessionClosed,
    SessionOpened,
    SlowPath,
    WritesLost,
)

GenKey = tuple[str, str]


def event_kind(event: StreamEvent) -> EmitKind | None:
    """The :class:`EmitKind` an event is emitted as (``None`` for a gap)."""
    if isinstance(event, Chunk):
        return EmitKind.CHUNK
    if isinstance(event, Done):
        return EmitKind.DONE
    if isinstance(event, Failure):
        return EmitKind.ERROR
    return None


@dataclass(slots=True)
class GenerationFacts:
    """Everything the generator of one (stream, generation) did, from its records."""

    stream_id: str
    generation: str
    started: GenerationStarted | None = None
    started_index: int | None = None
    #: Record index of the first sighting of the turn's job in the store (``JobObserved``):
    #: the turn existed from then on, though ``GenerationStarted`` is recorded only when
    #: its ``create_job`` call returned, which may be many decisions later.
    job_seen_index: int | None = None
    #: OK-emitted chunk seqs, sorted ascending (after :func:`index_history`).
    chunk_seqs: list[int] = field(default_factory=list)
    #: seq -> record index of the OK ``Emitted`` chunk.
    chunk_emit_index: dict[int, int] = field(default_factory=dict)
    #: The first OK-emitted terminal and its record index.
    terminal: Emitted | None = None
    terminal_index: int | None = None
    #: Record indexes of every OK emit, in record order (for emit-level checks).
    ok_emits: list[int] = field(default_factory=list)
    #: (kind, digest) of INDETERMINATE emits: they may or may not have been published.
    indeterminate: set[tuple[EmitKind, str]] = field(default_factory=set)
    #: Digests of ERROR emits that were OK or INDETERMINATE.
    error_digests: set[str] = field(default_factory=set)
    #: Record indexes of acknowledged aborts of this generation.
    acknowledged_aborts: list[int] = field(default_factory=list)
    #: Record index of the first time an abort stopped its generator.
    stopped_index: int | None = None
    #: Record index of the first time its generator was told to stop, for any reason.
    any_stop_index: int | None = None
    #: Digests of the terminals aborts published for this generation.
    abort_terminal_digests: set[str] = field(default_factory=set)
    #: Payload digest -> (replica, record index) of every OK or INDETERMINATE emit: the
    #: order one replica's generator made its events in (it makes one at a time).
    made: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Digests emitted more than once: their order cannot be told.
    made_twice: set[str] = field(default_factory=set)
    #: Digests of the generator's own terminals (not an abort's) that were OK or
    #: INDETERMINATE: what a reader gets if the generator, not an abort, ended the turn.
    own_terminal_digests: set[str] = field(default_factory=set)
    #: Digests of every done the generation tried to publish, whatever the outcome.
    attempted_done_digests: set[str] = field(default_factory=set)
    #: The earliest ``invoked_index`` of a terminal emit of the generator's own (any outcome):
    #: from then on the generator had stopped by itself.
    own_terminal_invoked_index: int | None = None
    #: Record index of the first acknowledgement that the turn ended: an OK terminal
    #: emit returned, or an abort reported it aborted.
    end_acknowledged_index: int | None = None
    #: (record index, session) of every terminal a reader received, in order: an end
    #: acknowledged to that reader unless its session ended as ``STREAM_FAILED`` (a
    #: failure of its replica's actor, which ends the session there, not the turn).
    reader_terminals: list[tuple[int, str]] = field(default_factory=list)

    def note_end_acknowledged(self, i: int) -> None:
        if self.end_acknowledged_index is None:
            self.end_acknowledged_index = i

    @property
    def terminal_seq(self) -> int | None:
        return None if self.terminal is None else self.terminal.seq

    def chunks_between(self, low: int, high: int) -> list[int]:
        """OK-emitted chunk seqs ``s`` with ``low < s < high``."""
        seqs = self.chunk_seqs
        return seqs[bisect.bisect_right(seqs, low) : bisect.bisect_left(seqs, high)]


@dataclass(slots=True)
class SessionFacts:
    opened: SessionOpened
    opened_index: int
    deliveries: list[int] = field(default_factory=list)
    closed: SessionClosed | None = None
    closed_index: int | None = None


@dataclass(slots=True)
class HistoryIndex:
    """A history read once, keyed for the checker's look-ups."""

    records: Sequence[Record]
    generations: dict[GenKey, GenerationFacts] = field(default_factory=dict)
    #: (stream, seq) -> record index of the first OK emit that got that seq.
    ok_by_seq: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (stream, seq) -> record indexes of later OK emits that got the same seq.
    reused_seqs: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: stream -> sorted [(start_seq, generation)].
    starts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sessions: dict[str, SessionFacts] = field(default_factory=dict)
    healed_index: int | None = None
    #: Indexes of WritesLost records, ascending.
    writes_lost: list[int] = field(default_factory=list)
    #: The producer records every fault it causes (a ``FaultsRecorded`` record).
    faults_recorded: bool = False
    #: Indexes of every ``FaultInjected`` record, ascending ...
    faults: list[int] = field(default_factory=list)
    #: ... of the failovers among them ...
    failovers: list[int] = field(default_factory=list)
    #: ... and of each replica's crashes.
    crashes: dict[str, list[int]] = field(default_factory=dict)
    #: How long a chunk-log entry surely stays (``FaultsRecorded.log_ttl_s``).
    log_ttl_s: float | None = None
    #: Indexes of ``SlowPath`` records.
    slow_paths: list[int] = field(default_factory=list)

    def lost_between(self, after: int | None, before: int) -> bool:
        """Did Redis lose writes between records ``after`` and ``before``?"""
        if after is None:
            return False
        i = bisect.bisect_right(self.writes_lost, after)
        return i < len(self.writes_lost) and self.writes_lost[i] < before

    def failover_between(self, after: int | None, before: int) -> bool:
        """Did Redis fail over (or lose writes) between records ``after`` and ``before``?"""
        low = -1 if after is None else after
        if self.lost_between(low, before):
            return True
        i = bisect.bisect_right(self.failovers, low)
        return i < len(self.failovers) and self.failovers[i] < before

    def crashed_between(self, replica: str, after: int | None, before: int) -> bool:
        """Did ``replica`` crash between records ``after`` and ``before``?"""
        marks = self.crashes.get(replica, [])
        low = -1 if after is None else after
        i = bisect.bisect_right(marks, low)
        return i < len(marks) and marks[i] < before

    def publish_times(self, stream_id: str, before: int) -> list[float]:
        """When the stream's events were published (OK emits), before record ``before``,
        in time order: each publish refreshes the stream's chunk-log TTL."""
        return sorted(
            self.records[j].time
            for gen in self.generations.values()
            if gen.stream_id == stream_id
            for j in gen.ok_emits
            if j < before
        )

    def generation(self, stream_id: str, generation: str) -> GenerationFacts:
        key = (stream_id, generation)
        facts = self.generations.get(key)
        if facts is None:
            facts = self.generations[key] = GenerationFacts(stream_id, generation)
        return facts

    def owner_of_seq(self, stream_id: str, seq: int) -> str | None:
        """The generation whose seq range holds ``seq`` (by start seqs), if any."""
        starts = self.starts.get(stream_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, (seq, "\U0010ffff")) - 1
        return None if i < 0 else starts[i][1]


def records_of(history: History | Sequence[Record]) -> Sequence[Record]:
    return history.records if isinstance(history, History) else history


def index_history(history: History | Sequence[Record]) -> HistoryIndex:
    """One linear pass. Record indexes are positions in the record list."""
    records = records_of(history)
    index = HistoryIndex(records)
    latest_generation: dict[str, str] = {}
    for i, record in enumerate(records):
        kind = type(record)
        if kind is Delivered:
            assert isinstance(record, Delivered)
            facts = index.sessions.get(record.session)
            if facts is not None:
                facts.deliveries.append(i)
                event = record.event
                if isinstance(event, Done | Failure):
                    # A reader was told the turn ended (its real terminal, or one the
                    # reader concluded after fencing the turn); whether that ended the
                    # turn depends on how its session closed (see ``reader_terminals``).
                    index.generation(
                        facts.opened.stream_id, event.generation
                    ).reader_terminals.append((i, record.session))
        elif kind is Emitted:
            assert isinstance(record, Emitted)
            _index_emit(index, record, i)
        elif kind is SessionOpened:
            assert isinstance(record, SessionOpened)
            index.sessions[record.session] = SessionFacts(record, i)
        elif kind is SessionClosed:
            assert isinstance(record, SessionClosed)
            session = index.sessions.get(record.session)
            if session is not None and session.closed is None:
                session.closed, session.closed_index = record, i
        elif kind is GenerationStarted:
            assert isinstance(record, GenerationStarted)
            gen = index.generation(record.stream_id, record.generation)
            gen.started, gen.started_index = record, i
            index.starts.setdefault(record.stream_id, []).append(
                (record.start_seq, record.generation)
            )
            latest_generation[record.stream_id] = record.generation
        elif kind is JobObserved:
            assert isinstance(record, JobObserved)
            if record.generation is not None:
                seen = index.generation(record.stream_id, record.generation)
                if seen.job_seen_index is None:
                    seen.job_seen_index = i
        elif kind is AbortRequested:
            assert isinstance(record, AbortRequested)
            target = record.generation or latest_generation.get(record.stream_id)
            if record.acknowledged and target is not None:
                aborted = index.generation(record.stream_id, target)
                aborted.acknowledged_aborts.append(i)
                aborted.note_end_acknowledged(i)
        elif kind is GeneratorStopped:
            assert isinstance(record, GeneratorStopped)
            gen = index.generation(record.stream_id, record.generation)
            if gen.stopped_index is None and record.by_abort:
                gen.stopped_index = i
            if gen.any_stop_index is None:
                gen.any_stop_index = i
        elif kind is Healed and index.healed_index is None:
            index.healed_index = i
        elif kind is WritesLost:
            index.writes_lost.append(i)
        elif kind is FaultInjected:
            assert isinstance(record, FaultInjected)
            index.faults.append(i)
            if record.fault is FaultKind.FAILOVER:
                index.failovers.append(i)
            elif record.fault is FaultKind.CRASH:
                index.crashes.setdefault(record.detail, []).append(i)
        elif kind is FaultsRecorded:
            assert isinstance(record, FaultsRecorded)
            index.faults_recorded = True
            index.log_ttl_s = record.log_ttl_s
        elif kind is SlowPath:
            index.slow_paths.append(i)
    for starts in index.starts.values():
        starts.sort()
    for gen in index.generations.values():
        gen.chunk_seqs.sort()
    return index


def _index_emit(index: HistoryIndex, record: Emitted, i: int) -> None:
    gen = index.generation(record.stream_id, record.generation)
    if record.kind is EmitKind.DONE:
        gen.attempted_done_digests.add(record.payload_digest)
    if record.kind is not EmitKind.CHUNK and not record.by_abort:
        if record.invoked_index is not None and (
            gen.own_terminal_invoked_index is None
            or record.invoked_index < gen.own_terminal_invoked_index
        ):
            gen.own_terminal_invoked_index = record.invoked_index
        if record.outcome is not OpOutcome.FAIL:
            gen.own_terminal_digests.add(record.payload_digest)
    elif record.by_abort and record.outcome is not OpOutcome.FAIL:
        gen.abort_terminal_digests.add(record.payload_digest)
    if record.outcome is not OpOutcome.FAIL:
        if record.payload_digest in gen.made or (
            record.outcome is OpOutcome.INDETERMINATE and record.kind is not EmitKind.CHUNK
        ):
            # (A terminal whose publish went unanswered reaches readers whenever its
            # payload does: also later, rebuilt from the job that stored it, after chunks
            # a rude generator emitted once the call failed. Its order cannot be told.)
            gen.made_twice.add(record.payload_digest)
        else:
            gen.made[record.payload_digest] = (record.replica, i)
    if record.outcome is OpOutcome.INDETERMINATE:
        gen.indeterminate.add((record.kind, record.payload_digest))
        if record.kind is EmitKind.ERROR:
            gen.error_digests.add(record.payload_digest)
        return
    if record.outcome is not OpOutcome.OK or record.seq is None:
        return
    gen.ok_emits.append(i)
    key = (record.stream_id, record.seq)
    if key in index.ok_by_seq:
        index.reused_seqs.setdefault(key, []).append(i)
        return
    index.ok_by_seq[key] = i
    if record.kind is EmitKind.CHUNK:
        gen.chunk_seqs.append(record.seq)
        gen.chunk_emit_index[record.seq] = i
        return
    if record.kind is EmitKind.ERROR:
        gen.error_digests.add(record.payload_digest)
    gen.note_end_acknowledged(i)
    if gen.terminal is None:
        gen.terminal, gen.terminal_index = record, i


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class SessionExpectation:
    """What one session is owed, and how much of it has arrived so far.

    ``owed_seqs`` are the OK-emitted seqs of the session's generation at or above
    ``first_seq`` (chunks, then the terminal if it was OK-emitted), ascending.
    ``still_owed`` is the part neither delivered nor covered by a delivered gap.
    ``terminal_seq`` is ``None`` while no terminal of the generation is known.
    """

    session: str
    stream_id: str
    generation: str
    first_seq: int
    owed_seqs: tuple[int, ...]
    terminal_seq: int | None
    expected_snapshot_seqs: tuple[int, ...]
    delivered_seqs: tuple[int, ...]
    still_owed: tuple[int, ...]
    terminal_delivered: bool


def expected_snapshot(gen: GenerationFacts | None, first_seq: int) -> tuple[int, ...]:
    """The chunk seqs a resume at ``first_seq`` must have folded into its snapshot."""
    if gen is None:
        return ()
    start = gen.started.start_seq if gen.started is not None else 0
    return tuple(gen.chunks_between(start - 1, first_seq))


def expectation_from_index(index: HistoryIndex, session: str) -> SessionExpectation:
    facts = index.sessions.get(session)
    if facts is None:
        raise KeyError(f"no SessionOpened record for session {session!r} in this history")
    opened = facts.opened
    gen = index.generations.get((opened.stream_id, opened.generation))
    owed: list[int] = []
    terminal_seq: int | None = None
    if gen is not None:
        owed = gen.chunks_between(opened.first_seq - 1, 1 << 62)
        terminal_seq = gen.terminal_seq
        if terminal_seq is not None:
            owed = [s for s in owed if s < terminal_seq]
            if terminal_seq >= opened.first_seq:
                owed.append(terminal_seq)
    delivered: list[int] = []
    covered: list[tuple[int, int]] = []
    terminal_delivered = False
    for i in facts.deliveries:
        record = index.records[i]
        assert isinstance(record, Delivered)
        event = record.event
        if isinstance(event, Gap):
            covered.append((event.first_seq, event.last_seq))
            continue
        delivered.append(event.seq)
        terminal_delivered = terminal_delivered or isinstance(event, Done | Failure)
    seen = set(delivered)
    still = [s for s in owed if s not in seen and not any(a <= s <= b for a, b in covered)]
    if terminal_delivered and terminal_seq is not None and terminal_seq in still:
        still.remove(terminal_seq)  # a synthetic terminal stands in for the real one
    return SessionExpectation(
        session=session,
        stream_id=opened.stream_id,
        generation=opened.generation,
        first_seq=opened.first_seq,
        owed_seqs=tuple(owed),
        terminal_seq=terminal_seq,
        expected_snapshot_seqs=expected_snapshot(gen, opened.first_seq),
        delivered_seqs=tuple(delivered),
        still_owed=tuple(still),
        terminal_delivered=terminal_delivered,
    )


def expected_for_session(history: History | Sequence[Record], session: str) -> SessionExpectation:
    """What ``session`` is owed by the reference model, and what it still waits for.

    Raises ``KeyError`` if the history never opened ``session``. Linear in the
    history; to ask about many sessions, index once with :func:`index_history` and
    call :func:`expectation_from_index`.
    """
    return expectation_from_index(index_history(history), session)
