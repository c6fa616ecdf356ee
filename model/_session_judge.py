"""Judging one subscriber session against the reference model (one pass).

The judge walks the session's deliveries in record order and keeps:

* the **frontier**, the highest seq delivered or covered by a gap so far;
* the seqs delivered (for duplicates) and the resume snapshot (already received);
* **skip candidates**: owed chunks that a later delivery jumped over. If one arrives
  later it is ``REORDERED`` (reported when it arrives); if a gap covers it later the
  gap is ``REORDERED``; if neither ever happens it is ``SKIPPED_WITHOUT_GAP``,
  reported at the delivery that jumped;
* whether the terminal has arrived; after it, anything delivered is an anomaly.

Each delivery is identified first (is it the OK-emitted event at that seq, a possibly
published INDETERMINATE emit, a synthetic terminal, another generation's event, or
nothing anyone emitted?) and only events that occupy a legitimate slot move the
frontier. So one mutation produces one anomaly: a dropped middle chunk is a skip, a
swapped pair is one reorder, a duplicated chunk is one duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamcheck.model._anomalies import Anomaly, AnomalyKind
from streamcheck.model._events import (
    Chunk,
    Done,
    Failure,
    Gap,
    GapReason,
    SequencedEvent,
    StreamEvent,
)
from streamcheck.model._history import Delivered, SessionEnd
from streamcheck.model._identify import (
    Identity,
    Verdict,
    identify,
    seq_list,
    snapshot_problem,
    what,
)
from streamcheck.model._reference import GenerationFacts, HistoryIndex, SessionFacts

_FAR = 1 << 62


@dataclass(slots=True)
class SessionTally:
    """Counters the judges add to (turned into ``CheckStatistics`` by the checker)."""

    events_delivered: int = 0
    gaps_signalled: int = 0
    seqs_signalled_lost: int = 0
    synthetic_terminals: int = 0
    judged_for_liveness: int = 0


class SessionJudge:
    """Judges one session; appends its anomalies to ``out``."""

    def __init__(
        self,
        index: HistoryIndex,
        facts: SessionFacts,
        out: list[Anomaly],
        tally: SessionTally,
        *,
        published: Mapping[tuple[str, str], Mapping[int, int]] | None = None,
    ) -> None:
        opened = facts.opened
        #: Seqs of this generation's unacknowledged emits that some reader received
        #: (seq -> the first record showing it): they are owed like any other.
        self.published_unacknowledged: Mapping[int, int] = (published or {}).get(
            (opened.stream_id, opened.generation), {}
        )
        #: Every seq range a gap covered here, whatever its reason.
        self.gap_ranges: list[tuple[int, int]] = []
        self.index, self.facts, self.out, self.tally = index, facts, out, tally
        self.name = opened.session
        self.stream = opened.stream_id
        self.generation = opened.generation
        self.gen: GenerationFacts | None = index.generations.get((self.stream, self.generation))
        self.first_seq = opened.first_seq
        self.frontier = opened.first_seq - 1
        self.snapshot = frozenset(opened.snapshot_seqs)
        self.delivered: dict[int, int] = {}
        #: Seq ranges this session was told Redis lost (writes_lost, possibly_lost gaps).
        self.lost_ranges: list[tuple[int, int]] = []
        #: owed seq -> (index of the delivery that jumped over it, its seq, last good).
        self.skipped: dict[int, tuple[int, int, int | None]] = {}
        self.terminal_index: int | None = None
        #: Chunks a terminal jumped over or hid (already reported; not reported again).
        self.hidden_by_terminal: frozenset[int] = frozenset()
        self.last_good: int | None = facts.opened_index
        #: Per producing replica, the latest-made emit received so far: (its Emitted
        #: record index, the event as delivered).
        self.latest_made: dict[str, tuple[int, SequencedEvent]] = {}

    # -- reporting -------------------------------------------------------------------

    def report(self, kind: AnomalyKind, at: int, seq: int | None, text: str) -> None:
        self.out.append(
            Anomaly(
                kind=kind,
                session=self.name,
                stream_id=self.stream,
                generation=self.generation,
                seq=seq,
                first_bad=at,
                last_good=self.last_good,
                explanation=f"session {self.name} {text}",
            )
        )

    # -- the walk ----------------------------------------------------------------------

    def run(self) -> None:
        self._check_snapshot()
        opened = self.facts.opened
        started = self.gen.started if self.gen is not None else None
        owner = started.user_id if started is not None else opened.owner_id
        foreign = opened.user_id != opened.owner_id or opened.user_id != owner
        records = self.index.records
        for i in self.facts.deliveries:
            record = records[i]
            assert isinstance(record, Delivered)
            if foreign:
                foreign = False
                self.report(
                    AnomalyKind.FOREIGN_DELIVERY,
                    i,
                    getattr(record.event, "seq", None),
                    f"of user {opened.user_id} received {what(record.event)} of stream "
                    f"{self.stream}, which belongs to user {owner}; only the owner may read it",
                )
            if not self._judge(i, record):
                self.last_good = i
        self._finish()

    def _check_snapshot(self) -> None:
        problem = snapshot_problem(self.index, self.gen, self.facts.opened)
        if problem is not None:
            seq, text = problem
            self.report(AnomalyKind.SNAPSHOT_MISMATCH, self.facts.opened_index, seq, text)

    def _judge(self, i: int, record: Delivered) -> bool:
        """Judge one delivery; True if it was bad."""
        event = record.event
        if not isinstance(event, Gap):
            self.tally.events_delivered += 1
        if self.terminal_index is not None:
            return self._after_terminal(i, event)
        if isinstance(event, Gap):
            return self._gap(i, event)
        if event.generation != self.generation:
            self.report(
                AnomalyKind.CROSS_GENERATION_LEAK,
                i,
                event.seq,
                f"of generation {self.generation} received {what(event)} of generation "
                f"{event.generation}; a session sees only its own turn",
            )
            return True
        identity = identify(self.index, self.gen, self.facts.opened, event, record.payload_digest)
        if identity.verdict is Verdict.BAD_SYNTHETIC and self._real_terminal_signalled_lost():
            # Redis lost the turn's terminal, and the session was told so: the job's
            # copy (what the synthetic terminal is rebuilt from) may have been lost too.
            identity = Identity(Verdict.SYNTHETIC)
        if identity.kind is not None:
            self.report(identity.kind, i, event.seq, identity.text)
        verdict = identity.verdict
        if verdict is Verdict.REJECTED:
            return True
        mismatch = isinstance(event, Done | Failure) and self._abort_outcome_mismatch(
            i, event, record.payload_digest
        )
        if verdict in (Verdict.SYNTHETIC, Verdict.BAD_SYNTHETIC):
            synthetic_bad = self._synthetic_terminal(i, event)
            return synthetic_bad or verdict is Verdict.BAD_SYNTHETIC or mismatch
        bad = self._place(i, event)
        if not bad and verdict is Verdict.REAL:
            bad = self._out_of_making_order(i, event, record.payload_digest)
        return bad or verdict is Verdict.MISMATCH or mismatch

    # -- placement in seq order -------------------------------------------------------

    def _owed_between(self, low: int, high: int) -> list[int]:
        return self.gen.chunks_between(low, high) if self.gen is not None else []

    def _place(self, i: int, event: SequencedEvent) -> bool:
        """Put a real event in its slot; True if that broke the order rules."""
        seq = event.seq
        terminal = isinstance(event, Done | Failure)
        if terminal and seq < self.first_seq and self.frontier < self.first_seq:
            self.terminal_index = i  # the generation had ended before the resume point
            return False
        if seq < self.first_seq:
            where = "in the resume snapshot" if seq in self.snapshot else "before its first_seq"
            self.report(
                AnomalyKind.DUPLICATE,
                i,
                seq,
                f"received {what(event)}, which is {where} ({self.first_seq}); each event "
                "must reach a session exactly once",
            )
            return True
        if seq in self.delivered:
            self.report(
                AnomalyKind.DUPLICATE,
                i,
                seq,
                f"received {what(event)} a second time (first at record "
                f"{self.delivered[seq]}); each event must reach a session exactly once",
            )
            return True
        self.delivered[seq] = i
        if terminal:
            self.terminal_index = i
        if seq <= self.frontier:
            self.skipped.pop(seq, None)
            self.report(
                AnomalyKind.REORDERED,
                i,
                seq,
                f"received {what(event)} after seq {self.frontier}; events must arrive "
                "in seq order",
            )
            return True
        jumped = self._owed_between(self.frontier, seq)
        self.frontier = seq
        if not jumped:
            return False
        if terminal:
            self.hidden_by_terminal = frozenset(jumped)
            self.report(
                AnomalyKind.TERMINAL_BEFORE_CHUNKS,
                i,
                jumped[0],
                f"received its terminal ({what(event)}) before owed chunk seqs "
                f"{seq_list(jumped)}; the terminal must come after every chunk",
            )
            return True
        for s in jumped:
            self.skipped[s] = (i, seq, self.last_good)
        return False  # judged at the end: a skip only if they never come

    def _out_of_making_order(self, i: int, event: SequencedEvent, digest: str | None) -> bool:
        """True (reported) if the generator made this event before one already received.

        Seq order alone cannot tell: a seq is given when Redis runs the publish, so
        publishes that race (docs/librechat.md, bug 1) reach everyone in one seq order that is not
        the generator's. Events of one replica's generator are compared (it makes one
        at a time); an abort's terminal from another replica is concurrent with them.
        """
        gen = self.gen
        if gen is None or digest is None or digest in gen.made_twice:
            return False
        made = gen.made.get(digest)
        if made is None:
            return False
        replica, position = made
        latest = self.latest_made.get(replica)
        if latest is None or position > latest[0]:
            self.latest_made[replica] = (position, event)
            return False
        self.report(
            AnomalyKind.REORDERED,
            i,
            event.seq,
            f"received {what(event)} after {what(latest[1])}, which its generator emitted "
            "later; a turn's events must arrive in the order they were emitted",
        )
        return True

    def _synthetic_terminal(self, i: int, event: SequencedEvent) -> bool:
        self.tally.synthetic_terminals += 1
        self.terminal_index = i
        closed = self.facts.closed
        if closed is not None and closed.reason is SessionEnd.STREAM_FAILED:
            return False  # the session broke off here; its turn goes on elsewhere
        gen = self.gen
        hidden: list[int] = []
        if gen is not None:
            for s in gen.chunks_between(self.frontier, _FAR):
                if s < event.seq or gen.chunk_emit_index[s] < i:
                    hidden.append(s)
                else:
                    break
        if not hidden or self._log_may_have_expired(i):
            return False
        self.hidden_by_terminal = frozenset(hidden)
        self.report(
            AnomalyKind.LOST,
            i,
            hidden[0],
            f"ended with a synthetic terminal ({what(event)}) although chunk seqs "
            f"{seq_list(hidden)} were emitted and never delivered or signalled as a gap",
        )
        return True

    def _log_may_have_expired(self, at: int) -> bool:
        """In histories that record their faults: the stream's chunk log may have
        expired by record ``at``, no event of the stream having been published (each
        publish refreshes its TTL) for the log's TTL. A reader that attaches only then,
        from a cursor of a turn long over, can learn no more than that its turn ended."""
        index, ttl = self.index, self.index.log_ttl_s
        if ttl is None:
            return False
        published = index.publish_times(self.stream, at)
        return not published or index.records[at].time - published[-1] >= ttl

    def _real_terminal_signalled_lost(self) -> bool:
        """The generation's emitted terminal lies in a gap this session was told Redis
        lost (``writes_lost`` or ``possibly_lost``)."""
        seq = self.gen.terminal_seq if self.gen is not None else None
        return seq is not None and any(a <= seq <= b for a, b in self.lost_ranges)

    def _gap(self, i: int, gap: Gap) -> bool:
        self.gap_ranges.append((gap.first_seq, gap.last_seq))
        if gap.reason in (GapReason.WRITES_LOST, GapReason.POSSIBLY_LOST):
            self.lost_ranges.append((gap.first_seq, gap.last_seq))
        self.tally.gaps_signalled += 1
        self.tally.seqs_signalled_lost += gap.last_seq - gap.first_seq + 1
        a, b = gap.first_seq, gap.last_seq
        if gap.generation != self.generation:
            self.report(
                AnomalyKind.CROSS_GENERATION_LEAK,
                i,
                a,
                f"of generation {self.generation} received a {what(gap)} of generation "
                f"{gap.generation}; a session sees only its own turn",
            )
            return True
        bad = False
        received = set(self.delivered) | self.snapshot
        if b - a + 1 <= len(received):
            over = [s for s in range(a, b + 1) if s in received]
        else:
            over = sorted(s for s in received if a <= s <= b)
        if over:
            bad = True
            self.report(
                AnomalyKind.GAP_OVER_DELIVERED,
                i,
                over[0],
                f"was told seqs {a}..{b} are lost ({gap.reason.value}) but had already "
                f"received seq {seq_list(over)}; a gap may cover only what never arrived",
            )
        bad = self._gap_without_loss(i, gap, set(over)) or bad
        late = sorted(s for s in self.skipped if a <= s <= b) if self.skipped else []
        if late:
            bad = True
            for s in late:
                del self.skipped[s]
            self.report(
                AnomalyKind.REORDERED,
                i,
                late[0],
                f"received {what(gap)} after seq {self.frontier} had been delivered; a gap "
                "must be signalled in seq order, before anything after it",
            )
        if b > self.frontier:
            for s in self._owed_between(self.frontier, a):
                self.skipped[s] = (i, a, self.last_good)
            self.frontier = b
        return bad

    def _gap_without_loss(self, i: int, gap: Gap, reported: set[int]) -> bool:
        """In a history that records its faults, a gap may cover an event its generation
        emitted only if something lost it: a failover (or lost writes) before the gap, or
        the log's TTL, once that much time passed since the turn started. Otherwise the
        event was in the chunk log when the reader read it, and a gap over it throws away
        what the reader was owed. True if reported."""
        gen = self.gen
        if gen is None or not self.index.faults_recorded:
            return False
        low = max(gap.first_seq, self.first_seq)
        owed = [s for s in gen.chunks_between(low - 1, gap.last_seq + 1) if s not in reported]
        end = gen.terminal_seq
        if end is not None and low <= end <= gap.last_seq and end not in reported:
            owed.append(end)
        # Any failover before the gap may have lost them: the turn may exist in Redis
        # well before its GenerationStarted record (written when create_job returns).
        if not owed or self.index.failover_between(None, i):
            return False
        # Past the log's TTL the entries may have expired (the job and its log left).
        ttl, started = self.index.log_ttl_s, gen.started
        delivered_at = self.index.records[i].time
        if ttl is not None and (started is None or delivered_at - started.time >= ttl):
            return False
        self.report(
            AnomalyKind.GAP_WITHOUT_LOSS,
            i,
            owed[0],
            f"was told seqs {gap.first_seq}..{gap.last_seq} are lost ({gap.reason.value}), "
            f"but its generation emitted seq {seq_list(owed)} and no failover lost them; "
            "a gap may cover only what the chunk log really lacks",
        )
        return True

    def _abort_outcome_mismatch(self, i: int, event: SequencedEvent, digest: str | None) -> bool:
        """The caller was told an abort ended the turn: readers must get the abort's
        terminal, not the generator's own (unless Redis lost writes during the turn, and
        with them perhaps the abort's claim). True if reported."""
        gen = self.gen
        if (
            gen is None
            or not gen.acknowledged_aborts
            or not gen.abort_terminal_digests  # what the abort published is not recorded
            or digest is None
            or digest not in gen.own_terminal_digests
            or digest in gen.abort_terminal_digests
            or self.index.lost_between(-1, max(i, gen.acknowledged_aborts[0]))
        ):
            return False
        self.report(
            AnomalyKind.ABORT_OUTCOME_MISMATCH,
            i,
            event.seq,
            f"received the generator's own terminal ({what(event)}) although an abort "
            f"(record {gen.acknowledged_aborts[0]}) was reported to its caller as having "
            "ended the turn; the terminal readers see must be the abort's",
        )
        return True

    def _after_terminal(self, i: int, event: StreamEvent) -> bool:
        if isinstance(event, Done | Failure):
            self.report(
                AnomalyKind.TERMINAL_TWICE,
                i,
                event.seq,
                f"received a second terminal ({what(event)}) after the one at record "
                f"{self.terminal_index}; a session ends on exactly one terminal",
            )
        elif isinstance(event, Chunk) and event.seq in self.hidden_by_terminal:
            pass  # already reported as arriving too late (terminal before chunks / lost)
        else:
            self.report(
                AnomalyKind.EVENT_AFTER_TERMINAL,
                i,
                event.first_seq if isinstance(event, Gap) else event.seq,
                f"received {what(event)} after its terminal (record {self.terminal_index}); "
                "nothing may follow the terminal",
            )
        return True

    # -- end of the session ------------------------------------------------------------

    def _finish(self) -> None:
        by_jump: dict[int, list[int]] = {}
        for s, (at, _, _) in self.skipped.items():
            by_jump.setdefault(at, []).append(s)
        for at, seqs in by_jump.items():
            seqs.sort()
            _, jump_seq, last_good = self.skipped[seqs[0]]
            self.last_good, saved = last_good, self.last_good
            self.report(
                AnomalyKind.SKIPPED_WITHOUT_GAP,
                at,
                seqs[0],
                f"received seq {jump_seq} while owed chunk seqs {seq_list(seqs)} had neither "
                "arrived nor been signalled as a gap, and they never were",
            )
            self.last_good = saved
        self._judge_published_unacknowledged()
        self._judge_liveness()

    def _judge_published_unacknowledged(self) -> None:
        """An emit whose outcome its caller never learned, and that another reader
        received, happened: this session must get it too if it got anything after it
        (no idempotency key makes a retry of it the same event). Not judged once Redis
        lost writes, nor past the log's TTL (the log may then lack it)."""
        index = self.index
        if not self.published_unacknowledged or not self.delivered or index.writes_lost:
            return
        ttl, started = index.log_ttl_s, self.gen.started if self.gen is not None else None
        for seq, shown_at in sorted(self.published_unacknowledged.items()):
            after = [i for s, i in self.delivered.items() if s > seq]
            if (
                seq < self.first_seq
                or seq in self.delivered
                or not after
                or any(a <= seq <= b for a, b in self.gap_ranges)
            ):
                continue
            jumped = min(after)
            if ttl is not None and (
                started is None or index.records[jumped].time - started.time >= ttl
            ):
                continue
            self.report(
                AnomalyKind.EMIT_SEEN_INCONSISTENTLY,
                jumped,
                seq,
                f"never received seq {seq}, an emit whose outcome its generator never "
                f"learned but which another reader received (record {shown_at}), although "
                "it received later events and no gap over it; an event that was published "
                "reaches every reader",
            )
            return

    def _judge_liveness(self) -> None:
        facts = self.facts
        reason = facts.closed.reason if facts.closed is not None else None
        judged = self.index.healed_index is not None and reason not in (
            SessionEnd.DETACHED,
            SessionEnd.REPLICA_CRASHED,
            SessionEnd.STREAM_FAILED,
        )
        self.tally.judged_for_liveness += judged
        if self.terminal_index is not None:
            return
        at = facts.closed_index if facts.closed_index is not None else len(self.index.records) - 1
        if reason is SessionEnd.TERMINAL:
            self.report(
                AnomalyKind.TERMINAL_MISSING,
                at,
                None,
                "was closed as finished without ever receiving a terminal; the response "
                "must end on a done or an error",
            )
        if not judged:
            return
        end = self.gen.terminal_seq if self.gen is not None else None
        lost = self._owed_between(self.frontier, _FAR if end is None else end)
        if reason is not SessionEnd.TERMINAL:
            state = "was still waiting" if reason is None else f"was closed ({reason.value})"
            self.report(
                AnomalyKind.TERMINAL_MISSING,
                at,
                end,
                f"{state} without a terminal after the faults healed (record "
                f"{self.index.healed_index}); liveness: every reader must get its terminal",
            )
        if lost:
            self.report(
                AnomalyKind.LOST,
                at,
                lost[0],
                f"never received emitted chunk seqs {seq_list(lost)} (nor a gap for them) "
                "although the faults healed; liveness: every owed event must arrive",
            )
