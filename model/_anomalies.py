"""What the history checker reports: named anomaly classes, not a single boolean.

The taxonomy follows Jepsen's Kafka/queue checker and Maelstrom's ``kafka`` workload
(lost write, duplicate, non-monotonic poll, skip), adapted to one subscriber session
that is owed a suffix of one generation's events followed by exactly one terminal.

Every :class:`Anomaly` names the first bad record and the last good one (Knossos
style), both as indexes into the history's record list, and carries one sentence a
person can read without the code::

    session s3 received seq 7 (chunk) after seq 9; events must arrive in seq order

A :class:`CheckReport` is a frozen value: ``report.ok`` is the verdict,
``report.by_kind()`` counts per class, ``report.summary()`` is text for a terminal and
``report.to_json()`` is what a replay file stores.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import final

from streamcheck.model._events import JSONValue

#: How many anomalies :meth:`CheckReport.summary` spells out before it abbreviates.
SUMMARY_DETAIL_LIMIT = 20


class AnomalyKind(enum.StrEnum):
    """The anomaly classes. Safety classes can be judged at any point of a run;
    :attr:`TERMINAL_MISSING` (and :attr:`LOST` for a session still waiting) are
    liveness classes, judged only once the history contains a ``Healed`` record."""

    #: An owed event was never delivered and nothing later jumped over it, yet the
    #: session claims completeness (its terminal arrived, a synthetic terminal hid it,
    #: or the run healed and the session should have received it by now).
    LOST = "lost"
    #: The same seq was delivered twice (or a seq already in the resume snapshot).
    DUPLICATE = "duplicate"
    #: A seq arrived after a higher one (or a gap was signalled after delivery moved on).
    REORDERED = "reordered"
    #: Delivery jumped over an owed seq that then never came and was never gap-covered.
    SKIPPED_WITHOUT_GAP = "skipped_without_gap"
    #: The payload differs from the one the generator emitted for that seq.
    CONTENT_MISMATCH = "content_mismatch"
    #: The terminal arrived while owed chunks with lower seqs had not been delivered.
    TERMINAL_BEFORE_CHUNKS = "terminal_before_chunks"
    #: Liveness: after the heal the reader was left hanging without a terminal.
    TERMINAL_MISSING = "terminal_missing"
    #: A second terminal (to one session, or emitted by one generation).
    TERMINAL_TWICE = "terminal_twice"
    #: Something was delivered (or emitted) after the terminal.
    EVENT_AFTER_TERMINAL = "event_after_terminal"
    #: An event of another generation (turn) of the stream reached the session.
    CROSS_GENERATION_LEAK = "cross_generation_leak"
    #: A delivered event that nobody ever emitted.
    PHANTOM = "phantom"
    #: An acknowledged abort did not stop the generation's chunks.
    ABORT_NOT_HONOURED = "abort_not_honoured"
    #: The generator published its own done or error after it was told to stop: the
    #: abort that stopped it should have claimed the turn first, so its terminal wins.
    TERMINAL_AFTER_STOP = "terminal_after_stop"
    #: A user received events of a stream they do not own.
    FOREIGN_DELIVERY = "foreign_delivery"
    #: The resume snapshot did not fold exactly the chunks before the resume cursor.
    SNAPSHOT_MISMATCH = "snapshot_mismatch"
    #: A gap was signalled over seqs the session had already received.
    GAP_OVER_DELIVERED = "gap_over_delivered"
    #: A bounded resource (an early buffer) grew past its limit.
    BOUND_EXCEEDED = "bound_exceeded"
    #: The implementation refused a call saying the turn had finished or was absent
    #: (or denied it to its owner) while it was certainly live.
    FALSE_REFUSAL = "false_refusal"
    #: A gap covered an event its generation emitted although nothing lost it: it was in
    #: the chunk log when the reader read it and no failover happened in between. Judged
    #: only in histories whose producer records its faults (``FaultsRecorded``).
    GAP_WITHOUT_LOSS = "gap_without_loss"
    #: Readers needed the slow path (a reorder timeout, events repaired from the log) in
    #: a run where nothing had been dropped, cut, failed over, crashed or delayed yet.
    SLOW_PATH_WITHOUT_CAUSE = "slow_path_without_cause"
    #: An emit invoked after the turn's end was acknowledged (its terminal emit returned,
    #: or an abort reported it aborted) was acknowledged too: the fence must refuse it.
    EMIT_AFTER_END = "emit_after_end"
    #: Liveness: an acknowledged abort never stopped its generator, although the
    #: generating replica stayed alive and the generator had not ended the turn itself.
    ABORT_NOT_DELIVERED = "abort_not_delivered"
    #: The caller was told the abort ended the turn, but a reader got the generator's
    #: own terminal instead of the abort's.
    ABORT_OUTCOME_MISMATCH = "abort_outcome_mismatch"
    #: The job store moved a job through an illegal status change (a terminal status
    #: changed, a terminal job running again) or brought back a job that was gone.
    JOB_STATUS_ILLEGAL = "job_status_illegal"
    #: After the heal, the shared store broke an invariant of its layout: a key without
    #: a TTL, a job that does not decode, a running job missing from an index, a job
    #: still running although a replica was up to reap it.
    KEYSPACE_INVALID = "keyspace_invalid"
    #: An emit whose caller never learned its outcome (its reply was lost) was
    #: published: some reader received it, yet another reader of its turn received
    #: later events without it (and without a gap over it). Without an idempotency
    #: promise a retried emit is a second event, and the first must reach every reader.
    EMIT_SEEN_INCONSISTENTLY = "emit_seen_inconsistently"
    #: A reader was ended "superseded" although no newer turn of its stream was ever
    #: started (judged by the simulation, which knows every turn asked for: a channel
    #: message of another generation is no proof of a newer turn).
    FALSE_SUPERSEDED = "false_superseded"


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class Anomaly:
    """One violation, located in the history.

    ``session`` is ``None`` for generation-level anomalies (what the generator
    emitted, independent of any reader). ``first_bad`` is the index of the record
    that proves the violation; ``last_good`` is the index of the last record of the
    same session (or generation) that was still fine, or ``None`` if there was none.
    """

    kind: AnomalyKind
    session: str | None
    stream_id: str
    generation: str | None
    seq: int | None
    first_bad: int
    last_good: int | None
    explanation: str

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "kind": self.kind.value,
            "session": self.session,
            "stream_id": self.stream_id,
            "generation": self.generation,
            "seq": self.seq,
            "first_bad": self.first_bad,
            "last_good": self.last_good,
            "explanation": self.explanation,
        }

    def describe(self) -> str:
        """``kind at record N (last good M): explanation`` on one line."""
        good = "none" if self.last_good is None else str(self.last_good)
        return (
            f"{self.kind.value} at record {self.first_bad} (last good {good}): {self.explanation}"
        )


class Verdict(enum.StrEnum):
    """Jepsen's three answers about a history: valid, invalid, or not known."""

    OK = "ok"
    ANOMALY = "anomaly"
    #: The history is malformed (a delivery to a session never opened, time running
    #: backwards, ...): it proves nothing either way.
    UNKNOWN = "unknown"


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class CheckStatistics:
    """What the checker looked at. Signalled loss (gaps) is not an anomaly but is
    counted here, so a run that "passes" by gapping everything is still visible."""

    records: int
    sessions: int
    sessions_judged_for_liveness: int
    generations: int
    events_delivered: int
    gaps_signalled: int
    seqs_signalled_lost: int
    synthetic_terminals: int
    healed: bool

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "records": self.records,
            "sessions": self.sessions,
            "sessions_judged_for_liveness": self.sessions_judged_for_liveness,
            "generations": self.generations,
            "events_delivered": self.events_delivered,
            "gaps_signalled": self.gaps_signalled,
            "seqs_signalled_lost": self.seqs_signalled_lost,
            "synthetic_terminals": self.synthetic_terminals,
            "healed": self.healed,
        }


@final
@dataclass(frozen=True, kw_only=True, slots=True)
class CheckReport:
    """The checker's verdict on one history.

    >>> report = check(history)            # doctest: +SKIP
    >>> report.ok, report.by_kind()        # doctest: +SKIP
    (False, {<AnomalyKind.DUPLICATE: 'duplicate'>: 1})

    Anomalies are sorted by ``first_bad`` so the earliest evidence comes first.
    """

    anomalies: tuple[Anomaly, ...]
    statistics: CheckStatistics
    #: Why the history could not be judged (it is malformed); ``None`` when it was.
    unknown_reason: str | None = None

    @property
    def verdict(self) -> Verdict:
        if self.unknown_reason is not None:
            return Verdict.UNKNOWN
        return Verdict.ANOMALY if self.anomalies else Verdict.OK

    @property
    def ok(self) -> bool:
        """Judged and clean. A history that could not be judged is never a pass."""
        return self.verdict is Verdict.OK

    def by_kind(self) -> dict[AnomalyKind, int]:
        return dict(Counter(a.kind for a in self.anomalies))

    def kinds(self) -> frozenset[AnomalyKind]:
        return frozenset(a.kind for a in self.anomalies)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "ok": self.ok,
            "verdict": self.verdict.value,
            "unknown_reason": self.unknown_reason,
            "by_kind": {kind.value: n for kind, n in sorted(self.by_kind().items())},
            "statistics": self.statistics.to_json(),
            "anomalies": [a.to_json() for a in self.anomalies],
        }

    def summary(self) -> str:
        s = self.statistics
        if self.unknown_reason is not None:
            return f"history check: unknown, the history cannot be judged: {self.unknown_reason}"
        verdict = "ok" if self.ok else f"{len(self.anomalies)} anomalies"
        lines = [
            f"history check: {verdict} in {s.records} records "
            f"({s.sessions} sessions, {s.generations} generations, "
            f"{s.events_delivered} events delivered, {s.gaps_signalled} gaps signalled "
            f"covering {s.seqs_signalled_lost} seqs, {s.synthetic_terminals} synthetic "
            f"terminals, liveness {'judged' if s.healed else 'not judged (no heal)'})"
        ]
        for kind, n in sorted(self.by_kind().items()):
            lines.append(f"  {kind.value}: {n}")
        for anomaly in self.anomalies[:SUMMARY_DETAIL_LIMIT]:
            lines.append(f"  - {anomaly.describe()}")
        hidden = len(self.anomalies) - SUMMARY_DETAIL_LIMIT
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
        return "\n".join(lines)
