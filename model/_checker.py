"""The history checker: judge a whole run against the reference model.

:func:`check` reads the history once into an index (:mod:`streamcheck.model._reference`), then

1. judges each **generation** on what it emitted: seqs allocated in increasing order
   (per replica: emits from two replicas may complete out of order) and never twice,
   none below its start seq, at most one terminal, no chunk after the terminal, and an
   acknowledged abort honoured (the last three unless Redis lost writes in between, a
   ``WritesLost`` record: the fence cannot remember what Redis forgot, but readers
   must still see one terminal and nothing after it);
2. judges each **session** on what it received (:mod:`streamcheck.model._session_judge`):
   safety always; liveness (terminal received, nothing owed missing) only for
   sessions that did not detach or lose their replica, and only when the history
   contains a ``Healed`` record;
3. judges each **refusal** a protocol agent reported (:mod:`streamcheck.model._refusals`):
   "finished" or "absent" while the turn was certainly live, or "denied" to the owner.

It runs in time linear in the history (plus a log factor for seq look-ups), so it
can judge every Hypothesis example::

    report = check(history)
    if not report.ok:
        print(report.summary())

Record indexes in anomalies are positions in the record list (``History.append``
makes them equal to ``record.index``).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from itertools import pairwise

from streamcheck.model._anomalies import Anomaly, AnomalyKind, CheckReport, CheckStatistics
from streamcheck.model._events import Chunk
from streamcheck.model._history import (
    AbortRequested,
    BoundExceeded,
    Delivered,
    EmitKind,
    Emitted,
    History,
    JobObserved,
    KeyspaceProblem,
    OpOutcome,
    Record,
    SessionClosed,
    SessionEnd,
    SessionOpened,
    SlowPath,
)
from streamcheck.model._identify import seq_list
from streamcheck.model._reference import (
    GenerationFacts,
    HistoryIndex,
    index_history,
    records_of,
)
from streamcheck.model._refusals import judge_refusals
from streamcheck.model._session_judge import SessionJudge, SessionTally

RECORD_TYPES = typing.get_args(Record)

#: Seconds after an acknowledged abort during which an emit may still return OK. The
#: publish fence refuses chunks once the abort's terminal is written, so none.
ABORT_GRACE_S = 0.0


def check(
    history: History | Sequence[Record], *, abort_grace: float = ABORT_GRACE_S
) -> CheckReport:
    """Judge ``history``; the report lists every anomaly, earliest evidence first. A
    malformed history is judged ``unknown`` with the reason (never a pass)."""
    records = records_of(history)
    reason = malformed(records)
    if reason is not None:
        return CheckReport(anomalies=(), statistics=_unjudged(records), unknown_reason=reason)
    index = index_history(records)
    anomalies: list[Anomaly] = []
    reused = {i for indexes in index.reused_seqs.values() for i in indexes}
    for gen in index.generations.values():
        _judge_generation(index, gen, anomalies, abort_grace, reused)
    _judge_reused_seqs(index, anomalies)
    tally = SessionTally()
    published = _published_unacknowledged(index)
    for facts in index.sessions.values():
        SessionJudge(index, facts, anomalies, tally, published=published).run()
    _judge_bounds(index, anomalies)
    judge_refusals(index.records, anomalies)
    _judge_slow_paths(index, anomalies)
    _judge_job_store(index, anomalies)
    anomalies.sort(key=lambda a: (a.first_bad, a.kind.value, a.session or ""))
    statistics = CheckStatistics(
        records=len(index.records),
        sessions=len(index.sessions),
        sessions_judged_for_liveness=tally.judged_for_liveness,
        generations=sum(1 for g in index.generations.values() if g.started is not None),
        events_delivered=tally.events_delivered,
        gaps_signalled=tally.gaps_signalled,
        seqs_signalled_lost=tally.seqs_signalled_lost,
        synthetic_terminals=tally.synthetic_terminals,
        healed=index.healed_index is not None,
    )
    return CheckReport(anomalies=tuple(anomalies), statistics=statistics)


def malformed(records: Sequence[Record]) -> str | None:
    """Why ``records`` is not a history the checker can judge, or ``None``."""
    opened: set[str] = set()
    previous = -math.inf
    for i, record in enumerate(records):
        if not isinstance(record, RECORD_TYPES):
            return f"record {i} is a {type(record).__name__}, not a history record"
        if record.time < previous:
            return f"record {i} ({type(record).__name__}) is earlier than record {i - 1}"
        previous = record.time
        if isinstance(record, SessionOpened):
            if record.session in opened:
                return f"record {i} opens session {record.session!r} a second time"
            opened.add(record.session)
        elif isinstance(record, Delivered | SessionClosed) and record.session not in opened:
            what = "delivers to" if isinstance(record, Delivered) else "closes"
            return f"record {i} {what} session {record.session!r}, which was never opened"
        elif isinstance(record, Emitted) and record.outcome is OpOutcome.OK and record.seq is None:
            return f"record {i} is an emit that succeeded without a seq"
    return None


def _unjudged(records: Sequence[Record]) -> CheckStatistics:
    return CheckStatistics(
        records=len(records),
        sessions=0,
        sessions_judged_for_liveness=0,
        generations=0,
        events_delivered=0,
        gaps_signalled=0,
        seqs_signalled_lost=0,
        synthetic_terminals=0,
        healed=False,
    )


def _published_unacknowledged(index: HistoryIndex) -> dict[tuple[str, str], dict[int, int]]:
    """Chunks whose emit's outcome was unknown to its caller (``INDETERMINATE``) but
    which some reader received, so they were published: per (stream, generation), the
    seq each was received at, and the first record that shows it."""
    shown: dict[tuple[str, str], dict[int, int]] = {}
    for facts in index.sessions.values():
        opened = facts.opened
        gen = index.generations.get((opened.stream_id, opened.generation))
        if gen is None or not gen.indeterminate:
            continue
        for i in facts.deliveries:
            record = index.records[i]
            assert isinstance(record, Delivered)
            event = record.event
            if (
                isinstance(event, Chunk)
                and event.generation == opened.generation
                and (EmitKind.CHUNK, record.payload_digest or "") in gen.indeterminate
                and (opened.stream_id, event.seq) not in index.ok_by_seq
            ):
                seen = shown.setdefault((opened.stream_id, opened.generation), {})
                seen[event.seq] = min(i, seen.get(event.seq, i))
    return shown


def _judge_bounds(index: HistoryIndex, anomalies: list[Anomaly]) -> None:
    for i, record in enumerate(index.records):
        if isinstance(record, BoundExceeded):
            anomalies.append(
                Anomaly(
                    kind=AnomalyKind.BOUND_EXCEEDED,
                    session=None,
                    stream_id=record.stream_id,
                    generation=None,
                    seq=None,
                    first_bad=i,
                    last_good=None,
                    explanation=(
                        f"replica {record.replica} reached {record.value} for {record.resource} "
                        f"on stream {record.stream_id}, over the bound of {record.limit}; "
                        "a replica's work and memory for a stream must stay bounded, whoever "
                        "reads it and however long a client stays away"
                    ),
                )
            )


def _emitted(index: HistoryIndex, i: int) -> Emitted:
    record = index.records[i]
    assert isinstance(record, Emitted)
    return record


def _generation_anomaly(
    gen: GenerationFacts,
    kind: AnomalyKind,
    seq: int | None,
    first_bad: int,
    last_good: int | None,
    text: str,
) -> Anomaly:
    return Anomaly(
        kind=kind,
        session=None,
        stream_id=gen.stream_id,
        generation=gen.generation,
        seq=seq,
        first_bad=first_bad,
        last_good=last_good,
        explanation=f"generation {gen.generation} of stream {gen.stream_id} {text}",
    )


def _judge_generation(
    index: HistoryIndex,
    gen: GenerationFacts,
    out: list[Anomaly],
    abort_grace: float,
    reused: set[int],
) -> None:
    start = gen.started.start_seq if gen.started is not None else None
    aborted = bool(gen.acknowledged_aborts)
    terminal_seq = gen.terminal_seq
    last_good = gen.started_index
    #: The last OK emit per replica: one replica's emits of a turn are sequential, but
    #: an abort's terminal from another replica may complete before a chunk that got a
    #: lower seq.
    previous_by_replica: dict[str, Emitted] = {}
    terminals = 0
    first_terminal: int | None = None
    late_chunks: list[tuple[int, Emitted]] = []
    for i in gen.ok_emits:
        if i in reused:
            continue
        record = _emitted(index, i)
        seq = record.seq
        assert seq is not None
        bad = True
        if start is not None and seq < start:
            out.append(
                _generation_anomaly(
                    gen,
                    AnomalyKind.CROSS_GENERATION_LEAK,
                    seq,
                    i,
                    last_good,
                    f"emitted seq {seq}, below its start seq {start}, in an earlier turn's range",
                )
            )
        elif (
            (previous := previous_by_replica.get(record.replica)) is not None
            and previous.seq is not None
            and seq <= previous.seq
        ):
            out.append(
                _generation_anomaly(
                    gen,
                    AnomalyKind.REORDERED,
                    seq,
                    i,
                    last_good,
                    f"emitted seq {seq} after seq {previous.seq}; seqs must be allocated in "
                    "increasing order",
                )
            )
        elif record.kind is not EmitKind.CHUNK:
            terminals += 1
            if first_terminal is None:
                first_terminal = i
            # Redis may lose the write that ended the turn (WritesLost): then the fence
            # cannot know, and a second terminal is what async replication allows.
            bad = terminals > 1 and not index.lost_between(first_terminal, i)
            if bad:
                out.append(
                    _generation_anomaly(
                        gen,
                        AnomalyKind.TERMINAL_TWICE,
                        seq,
                        i,
                        last_good,
                        f"emitted a second terminal ({record.kind.value} at seq {seq}) after "
                        f"the one at seq {terminal_seq}; the fence allows one terminal",
                    )
                )
        elif (
            terminal_seq is not None
            and seq > terminal_seq
            and not index.lost_between(gen.terminal_index, i)
        ):
            late_chunks.append((i, record))
        else:
            bad = False
        previous_by_replica[record.replica] = record
        if not bad:
            last_good = i
    _judge_stop(index, gen, out)
    _judge_emits_after_end(index, gen, out)
    _judge_abort_reached(index, gen, out)
    if aborted:
        _judge_abort(index, gen, out, abort_grace, late_chunks)
    elif late_chunks:
        i, record = late_chunks[0]
        out.append(
            _generation_anomaly(
                gen,
                AnomalyKind.EVENT_AFTER_TERMINAL,
                record.seq,
                i,
                gen.terminal_index,
                f"emitted chunk seqs {seq_list([r.seq or 0 for _, r in late_chunks])} after "
                f"its terminal at seq {terminal_seq}; the fence must refuse them",
            )
        )


def _judge_stop(index: HistoryIndex, gen: GenerationFacts, out: list[Anomaly]) -> None:
    """Once its generator was told to stop, a turn ends with the abort's terminal: a done
    or error of the generator's own that completes later means the stop came before the
    abort held the turn. Unless Redis lost writes during the turn (from the first sighting
    of its job: the turn may be aborted before its ``create_job`` call returns): a failover
    may forget the abort's claim, written before the stop."""
    stopped = gen.stopped_index
    if stopped is None:
        return
    began = [x for x in (gen.started_index, gen.job_seen_index) if x is not None]
    since = min(began, default=-1)
    for i in gen.ok_emits:
        record = _emitted(index, i)
        if (
            i > stopped
            and record.kind is not EmitKind.CHUNK
            and not record.by_abort
            and not index.lost_between(since, i)
        ):
            out.append(
                _generation_anomaly(
                    gen,
                    AnomalyKind.TERMINAL_AFTER_STOP,
                    record.seq,
                    i,
                    stopped,
                    f"published its own {record.kind.value} at seq {record.seq} after its "
                    f"generator was told to stop (record {stopped}); an abort must claim the "
                    "turn before it stops the generator, so the abort's terminal is the one "
                    "readers get",
                )
            )
            return


def _judge_emits_after_end(index: HistoryIndex, gen: GenerationFacts, out: list[Anomaly]) -> None:
    """Once the turn's end was acknowledged to someone (a terminal emit returned OK, an
    abort reported ABORTED, or a reader got a terminal other than its replica's actor
    failing), an emit invoked later must be refused: whoever heard "it
    ended" must never see the turn go on. Unless Redis lost writes in between (the
    fence cannot remember what Redis forgot)."""
    ended = gen.end_acknowledged_index
    for i, session in gen.reader_terminals:
        closed = index.sessions[session].closed
        if closed is None or closed.reason is not SessionEnd.STREAM_FAILED:
            ended = i if ended is None else min(ended, i)
            break
    if ended is None:
        return
    for i in gen.ok_emits:
        record = _emitted(index, i)
        if (
            record.invoked_index is not None
            and record.invoked_index > ended
            and not index.lost_between(ended, i)
        ):
            out.append(
                _generation_anomaly(
                    gen,
                    AnomalyKind.EMIT_AFTER_END,
                    record.seq,
                    i,
                    ended,
                    f"acknowledged a {record.kind.value} (seq {record.seq}) whose emit was "
                    f"invoked after record {ended} had acknowledged the turn's end; once an "
                    "end is acknowledged the fence must refuse every later emit",
                )
            )
            return


def _judge_abort_reached(index: HistoryIndex, gen: GenerationFacts, out: list[Anomaly]) -> None:
    """Liveness, in histories that record their faults: an acknowledged abort reaches its
    generator (the generator is told to stop) by the time the run healed, unless the
    generating replica crashed, the generator had already ended the turn itself, or
    Redis lost writes after the abort (and with them perhaps its claim)."""
    healed = index.healed_index
    started = gen.started
    if (
        not index.faults_recorded
        or healed is None
        or started is None
        or not gen.acknowledged_aborts
        or gen.any_stop_index is not None
    ):
        return
    abort_at = gen.acknowledged_aborts[0]
    own_end = gen.own_terminal_invoked_index
    if own_end is not None and own_end <= abort_at:
        return
    if index.crashed_between(started.replica, gen.started_index, healed):
        return
    if index.lost_between(abort_at, healed):
        return  # Redis may have forgotten the abort's claim: the generator may end normally
    out.append(
        _generation_anomaly(
            gen,
            AnomalyKind.ABORT_NOT_DELIVERED,
            None,
            healed,
            abort_at,
            f"was aborted (record {abort_at}) but its generator on {started.replica} was "
            f"never told to stop, although that replica stayed up and the faults healed "
            f"(record {healed}); every acknowledged abort must reach its generator",
        )
    )


def _judge_slow_paths(index: HistoryIndex, out: list[Anomaly]) -> None:
    """In histories that record their faults, the slow path (a reorder timeout, events
    repaired from the chunk log) needs a cause: a fault injected before it. A log read
    that merely went before the live copies of what it found (``SlowPath.raced``) is no
    slow path: pub/sub was bringing them."""
    if not index.faults_recorded:
        return
    first_fault = index.faults[0] if index.faults else None
    for i in index.slow_paths:
        if first_fault is not None and first_fault < i:
            return
        record = index.records[i]
        assert isinstance(record, SlowPath)
        if not record.needs_cause:
            continue
        if _a_log_may_have_expired(index, i):
            # Readers then wait for seqs no log holds any more: the expiry is the cause.
            return
        out.append(
            Anomaly(
                kind=AnomalyKind.SLOW_PATH_WITHOUT_CAUSE,
                session=None,
                stream_id="*",
                generation=None,
                seq=None,
                first_bad=i,
                last_good=None,
                explanation=(
                    f"readers on replica {record.replica} needed the slow path "
                    f"({record.reorder_timeouts} reorder timeouts, {record.log_repaired} "
                    f"events repaired from the chunk log, of which at most {record.raced} "
                    "had a live copy on its way) although no message had been "
                    "dropped, no connection cut, no failover, crash, delay or forgery had "
                    "happened; "
                    "without a fault, pub/sub must deliver every event on the fast path"
                ),
            )
        )
        return


def _a_log_may_have_expired(index: HistoryIndex, at: int) -> bool:
    """Some stream's chunk log may have expired, with the entries it held, by record
    ``at``: it was published on, and then not for the log's TTL (each publish refreshes
    it; a later one starts a new log without the expired entries)."""
    ttl = index.log_ttl_s
    if ttl is None:
        return False
    now = index.records[at].time
    for stream_id in {gen.stream_id for gen in index.generations.values()}:
        times = index.publish_times(stream_id, at)
        if times and any(later - earlier >= ttl for earlier, later in pairwise([*times, now])):
            return True
    return False


#: Job statuses from which the store may move on (any other is terminal for good).
_RUNNING = "running"


def _job_anomaly(
    record: JobObserved | KeyspaceProblem, i: int, last_good: int | None, text: str
) -> Anomaly:
    is_job = isinstance(record, JobObserved)
    return Anomaly(
        kind=AnomalyKind.JOB_STATUS_ILLEGAL if is_job else AnomalyKind.KEYSPACE_INVALID,
        session=None,
        stream_id=record.stream_id if isinstance(record, JobObserved) else "*",
        generation=record.generation if isinstance(record, JobObserved) else None,
        seq=None,
        first_bad=i,
        last_good=last_good,
        explanation=text,
    )


def _judge_job_store(index: HistoryIndex, out: list[Anomaly]) -> None:
    """The job store's states, as the world sampled them: a terminal status never
    changes, and a job that was replaced, deleted or expired never comes back (both
    unless a failover lost writes in between: Redis may then forget the later write).
    Every problem the heal-phase keyspace audit found is an anomaly too."""
    last: dict[str, tuple[str | None, str | None, int]] = {}
    gone: dict[tuple[str, str], int] = {}
    for i, record in enumerate(index.records):
        if isinstance(record, KeyspaceProblem):
            out.append(
                _job_anomaly(
                    record,
                    i,
                    None,
                    f"after the heal, key {record.key} {record.problem}; the shared store "
                    "must keep its layout's invariants",
                )
            )
            continue
        if not isinstance(record, JobObserved):
            continue
        stream, generation, status = record.stream_id, record.generation, record.status
        previous = last.get(stream)
        last[stream] = (generation, status, i)
        if previous is None:
            continue
        before_gen, before_status, at = previous
        if before_gen is not None and before_gen != generation:
            gone[(stream, before_gen)] = i
        if index.failover_between(at, i) or generation is None:
            continue
        left = gone.get((stream, generation))
        if left is not None and not index.failover_between(left, i):
            out.append(
                _job_anomaly(
                    record,
                    i,
                    at,
                    f"the job of stream {stream}, generation {generation}, came back (status "
                    f"{status}) after it was replaced, deleted or expired (record {left}); "
                    "a job that left never returns",
                )
            )
            del gone[(stream, generation)]
        elif before_gen == generation and before_status not in (_RUNNING, status):
            out.append(
                _job_anomaly(
                    record,
                    i,
                    at,
                    f"the job of stream {stream}, generation {generation}, went from "
                    f"{before_status} to {status}; a terminal status never changes",
                )
            )


def _judge_abort(
    index: HistoryIndex,
    gen: GenerationFacts,
    out: list[Anomaly],
    abort_grace: float,
    late_chunks: list[tuple[int, Emitted]],
) -> None:
    abort_at = gen.acknowledged_aborts[0]
    abort = index.records[abort_at]
    assert isinstance(abort, AbortRequested)
    offenders = list(late_chunks)
    if gen.terminal is None:
        # No terminal to compare seqs with: fall back on time.
        for i in gen.ok_emits:
            record = _emitted(index, i)
            if (
                record.kind is EmitKind.CHUNK
                and record.time > abort.time + abort_grace
                and not index.lost_between(abort_at, i)
            ):
                offenders.append((i, record))
    if not offenders:
        return
    i, record = offenders[0]
    after = (
        f"after the abort's terminal at seq {gen.terminal_seq}"
        if gen.terminal is not None
        else f"more than {abort_grace}s after the abort was acknowledged at t={abort.time}"
    )
    out.append(
        _generation_anomaly(
            gen,
            AnomalyKind.ABORT_NOT_HONOURED,
            record.seq,
            i,
            abort_at,
            f"emitted chunk seqs {seq_list([r.seq or 0 for _, r in offenders])} {after}; "
            "an acknowledged abort must stop the generator",
        )
    )


def _judge_reused_seqs(index: HistoryIndex, out: list[Anomaly]) -> None:
    for (stream, seq), indexes in index.reused_seqs.items():
        first = index.ok_by_seq[(stream, seq)]
        for i in indexes:
            record = _emitted(index, i)
            out.append(
                Anomaly(
                    kind=AnomalyKind.DUPLICATE,
                    session=None,
                    stream_id=stream,
                    generation=record.generation,
                    seq=seq,
                    first_bad=i,
                    last_good=first,
                    explanation=f"stream {stream} allocated seq {seq} twice (records {first} "
                    f"and {i}); each seq names one event",
                )
            )
