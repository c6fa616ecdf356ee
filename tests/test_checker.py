"""The history checker: one hand-written history per anomaly class, each next to a
near-identical history that passes, plus a property test that mutates correct
histories and expects exactly the class the mutation creates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from streamcheck.model import (
    AbortRequested,
    AnomalyKind,
    CheckReport,
    Chunk,
    Delivered,
    Done,
    EmitKind,
    Emitted,
    Failure,
    FaultInjected,
    FaultKind,
    FaultsRecorded,
    Gap,
    GapReason,
    GenerationStarted,
    GeneratorStopped,
    Healed,
    History,
    JobObserved,
    JSONValue,
    KeyspaceProblem,
    OpOutcome,
    Record,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    SlowPath,
    StreamEvent,
    Verdict,
    WritesLost,
    check,
    digest,
    expected_for_session,
)

SUPERSEDED = "generation superseded by a newer turn on this stream"
PRODUCER_LOST = "producer lost: the generating replica stopped responding"


def chunk_data(generation: str, seq: int) -> JSONValue:
    return {"text": f"{generation}:{seq}"}


def done_data(generation: str) -> JSONValue:
    return {"final": generation}


@dataclass
class Builder:
    """Writes histories tersely; every method returns the new record's index."""

    stream: str = "st"
    history: History = field(default_factory=History)
    clock: float = 0.0

    def _now(self) -> float:
        self.clock += 1.0
        return self.clock

    def start(self, generation: str = "g1", start_seq: int = 0, user: str = "u1") -> int:
        return self.history.append(
            GenerationStarted(
                time=self._now(),
                stream_id=self.stream,
                generation=generation,
                user_id=user,
                replica="r1",
                start_seq=start_seq,
            )
        ).index

    def emit(
        self,
        kind: EmitKind,
        payload: JSONValue,
        seq: int | None,
        generation: str = "g1",
        outcome: OpOutcome = OpOutcome.OK,
    ) -> int:
        return self.history.append(
            Emitted(
                time=self._now(),
                stream_id=self.stream,
                generation=generation,
                replica="r1",
                kind=kind,
                payload_digest=digest(payload),
                outcome=outcome,
                seq=seq if outcome is OpOutcome.OK else None,
            )
        ).index

    def chunks(self, seqs: range | list[int], generation: str = "g1") -> None:
        for seq in seqs:
            self.emit(EmitKind.CHUNK, chunk_data(generation, seq), seq, generation)

    def done(self, seq: int, generation: str = "g1") -> int:
        return self.emit(EmitKind.DONE, done_data(generation), seq, generation)

    def open(
        self,
        session: str,
        generation: str = "g1",
        first_seq: int = 0,
        user: str = "u1",
        snapshot: tuple[int, ...] = (),
    ) -> int:
        mode = SessionMode.RESUME if snapshot or first_seq > 0 else SessionMode.SUBSCRIBE
        return self.history.append(
            SessionOpened(
                time=self._now(),
                session=session,
                stream_id=self.stream,
                generation=generation,
                user_id=user,
                owner_id="u1",
                replica="r2",
                mode=mode,
                first_seq=first_seq,
                snapshot_seqs=snapshot,
            )
        ).index

    def deliver(self, session: str, event: StreamEvent, payload: JSONValue = None) -> int:
        if isinstance(event, Gap):
            payload_digest = None
        elif isinstance(event, Failure):
            payload_digest = digest(event.message)
        else:
            payload_digest = digest(event.data if payload is None else payload)
        return self.history.append(
            Delivered(time=self._now(), session=session, event=event, payload_digest=payload_digest)
        ).index

    def c(self, session: str, seq: int, generation: str = "g1") -> int:
        data = chunk_data(generation, seq)
        return self.deliver(session, Chunk(seq=seq, generation=generation, data=data))

    def d(self, session: str, seq: int, generation: str = "g1") -> int:
        return self.deliver(
            session, Done(seq=seq, generation=generation, data=done_data(generation))
        )

    def close(self, session: str, reason: SessionEnd = SessionEnd.TERMINAL) -> int:
        return self.history.append(
            SessionClosed(time=self._now(), session=session, reason=reason)
        ).index

    def heal(self) -> int:
        return self.history.append(Healed(time=self._now())).index


def only(report: CheckReport, kind: AnomalyKind, first_bad: int) -> None:
    """The report holds exactly one anomaly, of ``kind``, found at ``first_bad``."""
    assert [(a.kind, a.first_bad) for a in report.anomalies] == [(kind, first_bad)], (
        report.summary()
    )
    assert report.anomalies[0].explanation
    assert not report.ok


def passes(b: Builder) -> CheckReport:
    report = check(b.history)
    assert report.ok, report.summary()
    return report


def one_turn(chunks: int = 4) -> Builder:
    """Generation g1 emits chunks 0..chunks-1 and done at seq ``chunks``; s1 subscribes."""
    b = Builder()
    b.start()
    b.chunks(range(chunks))
    b.done(chunks)
    b.open("s1")
    return b


def deliver_in_order(b: Builder, seqs: list[int], done_seq: int = 4, close: bool = True) -> None:
    for seq in seqs:
        b.c("s1", seq)
    b.d("s1", done_seq)
    if close:
        b.close("s1")


# -- one history per class ---------------------------------------------------------------


def test_clean_single_turn_passes_and_counts() -> None:
    b = one_turn()
    deliver_in_order(b, [0, 1, 2, 3])
    b.heal()
    report = passes(b)
    assert report.statistics.events_delivered == 5
    assert report.statistics.sessions_judged_for_liveness == 1


@pytest.mark.parametrize("hidden", [True, False])
def test_lost_when_a_synthetic_terminal_hides_emitted_chunks(hidden: bool) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2 + hidden))
    b.open("s1")
    b.c("s1", 0)
    b.c("s1", 1)
    at = b.deliver("s1", Failure(seq=2, generation="g1", message=PRODUCER_LOST))
    b.close("s1")
    if hidden:
        only(check(b.history), AnomalyKind.LOST, at)
    else:
        assert passes(b).statistics.synthetic_terminals == 1


def test_lost_after_heal_for_a_reader_still_waiting() -> None:
    b = one_turn()
    b.c("s1", 0)
    b.c("s1", 1)
    healed = b.heal()
    report = check(b.history)
    assert report.by_kind() == {AnomalyKind.LOST: 1, AnomalyKind.TERMINAL_MISSING: 1}
    assert {a.first_bad for a in report.anomalies} == {healed}
    lost = next(a for a in report.anomalies if a.kind is AnomalyKind.LOST)
    assert lost.seq == 2 and lost.last_good == 8  # the delivery of seq 1


@pytest.mark.parametrize("twice", [True, False])
def test_duplicate_chunk(twice: bool) -> None:
    b = one_turn()
    b.c("s1", 0)
    b.c("s1", 1)
    dup = b.c("s1", 1) if twice else None
    deliver_in_order(b, [2, 3])
    if dup is not None:
        only(check(b.history), AnomalyKind.DUPLICATE, dup)
        assert check(b.history).anomalies[0].last_good == dup - 1
    else:
        passes(b)


@pytest.mark.parametrize("swapped", [True, False])
def test_reordered_chunks(swapped: bool) -> None:
    b = one_turn()
    b.c("s1", 0)
    late = b.c("s1", 2 if swapped else 1) + 1
    b.c("s1", 1 if swapped else 2)
    deliver_in_order(b, [3])
    if swapped:
        only(check(b.history), AnomalyKind.REORDERED, late)
    else:
        passes(b)


@pytest.mark.parametrize("raced", [True, False])
def test_reordered_against_the_generators_order_although_seqs_ascend(raced: bool) -> None:
    # docs/librechat.md, bug 1: publishes not awaited (seq unknown to the generator) race to Redis,
    # which numbers them in the order it runs them. Every seq arrives in order; the
    # generator's order is what was broken.
    b = Builder()
    b.start()
    made: list[JSONValue] = [{"text": name} for name in ("first", "second", "third")]
    for payload in made:
        b.emit(EmitKind.CHUNK, payload, None, outcome=OpOutcome.INDETERMINATE)
    b.emit(EmitKind.DONE, done_data("g1"), None, outcome=OpOutcome.INDETERMINATE)
    b.open("s1")
    order = [1, 0, 2] if raced else [0, 1, 2]
    late = None
    for seq, which in enumerate(order):
        at = b.deliver("s1", Chunk(seq=seq, generation="g1", data=made[which]))
        if seq == 1:
            late = at
    b.d("s1", 3)
    b.close("s1")
    b.heal()
    if raced:
        report = check(b.history)
        only(report, AnomalyKind.REORDERED, late or -1)
        assert "which its generator emitted later" in report.anomalies[0].explanation
    else:
        passes(b)


@pytest.mark.parametrize("signalled", [True, False])
def test_skip_without_gap_versus_signalled_gap(signalled: bool) -> None:
    b = one_turn()
    b.c("s1", 0)
    if signalled:
        b.deliver("s1", Gap(first_seq=1, last_seq=1, generation="g1", reason=GapReason.NOT_IN_LOG))
    jump = b.c("s1", 2)
    deliver_in_order(b, [3])
    b.heal()
    if signalled:
        report = passes(b)
        assert report.statistics.gaps_signalled == 1
        assert report.statistics.seqs_signalled_lost == 1
    else:
        only(check(b.history), AnomalyKind.SKIPPED_WITHOUT_GAP, jump)


@pytest.mark.parametrize("wrong", [True, False])
def test_content_mismatch(wrong: bool) -> None:
    b = one_turn()
    b.c("s1", 0)
    payload: JSONValue = {"text": "garbled"} if wrong else chunk_data("g1", 1)
    bad = b.deliver("s1", Chunk(seq=1, generation="g1", data=payload))
    deliver_in_order(b, [2, 3])
    if wrong:
        only(check(b.history), AnomalyKind.CONTENT_MISMATCH, bad)
    else:
        passes(b)


@pytest.mark.parametrize("early", [True, False])
def test_terminal_before_chunks(early: bool) -> None:
    b = one_turn()
    for seq in (0, 1, 2):
        b.c("s1", seq)
    if early:
        terminal = b.d("s1", 4)
        b.c("s1", 3)  # arrives too late; not reported a second time
    else:
        b.c("s1", 3)
        b.d("s1", 4)
    b.close("s1")
    if early:
        only(check(b.history), AnomalyKind.TERMINAL_BEFORE_CHUNKS, terminal)
    else:
        passes(b)


@pytest.mark.parametrize("reason", [SessionEnd.CLOSED, SessionEnd.DETACHED])
def test_terminal_missing_after_heal_unless_detached(reason: SessionEnd) -> None:
    b = one_turn()
    for seq in range(4):
        b.c("s1", seq)
    closed = b.close("s1", reason)
    b.heal()
    if reason is SessionEnd.CLOSED:
        only(check(b.history), AnomalyKind.TERMINAL_MISSING, closed)
    else:
        passes(b)


def test_terminal_missing_is_not_judged_without_heal() -> None:
    b = one_turn()
    b.c("s1", 0)
    b.close("s1", SessionEnd.CLOSED)
    passes(b)


@pytest.mark.parametrize("twice", [True, False])
def test_terminal_twice(twice: bool) -> None:
    b = one_turn()
    deliver_in_order(b, [0, 1, 2, 3], close=False)
    again = b.d("s1", 4) if twice else None
    b.close("s1")
    if again is not None:
        only(check(b.history), AnomalyKind.TERMINAL_TWICE, again)
    else:
        passes(b)


@pytest.mark.parametrize("replayed", [True, False])
def test_event_after_terminal(replayed: bool) -> None:
    b = one_turn()
    deliver_in_order(b, [0, 1, 2, 3], close=False)
    late = b.c("s1", 2) if replayed else None
    b.close("s1")
    if late is not None:
        only(check(b.history), AnomalyKind.EVENT_AFTER_TERMINAL, late)
    else:
        passes(b)


@pytest.mark.parametrize("emitted_after", [True, False])
def test_generation_emitting_after_its_terminal(emitted_after: bool) -> None:
    b = one_turn(2)
    late = b.emit(EmitKind.CHUNK, chunk_data("g1", 3), 3) if emitted_after else None
    deliver_in_order(b, [0, 1], done_seq=2)
    if late is not None:
        only(check(b.history), AnomalyKind.EVENT_AFTER_TERMINAL, late)
        assert check(b.history).anomalies[0].session is None
    else:
        passes(b)


def two_turns() -> Builder:
    """g1: chunks 0..2, done 3. g2 (from seq 4): chunks 4, 5, done 6."""
    b = Builder()
    b.start("g1")
    b.chunks(range(3), "g1")
    b.done(3, "g1")
    b.start("g2", start_seq=4)
    b.chunks([4, 5], "g2")
    b.done(6, "g2")
    return b


@pytest.mark.parametrize("leak", [True, False])
def test_cross_generation_leak(leak: bool) -> None:
    b = two_turns()
    b.open("s2", "g2", first_seq=4)
    b.c("s2", 4, "g2")
    bad = b.c("s2", 2, "g1") if leak else None
    b.c("s2", 5, "g2")
    b.d("s2", 6, "g2")
    b.close("s2")
    if bad is not None:
        only(check(b.history), AnomalyKind.CROSS_GENERATION_LEAK, bad)
    else:
        passes(b)


def test_leak_of_another_generations_seq_under_own_label() -> None:
    b = two_turns()
    b.open("s1", "g1")
    bad = b.deliver("s1", Chunk(seq=4, generation="g1", data=chunk_data("g2", 4)))
    only(check(b.history), AnomalyKind.CROSS_GENERATION_LEAK, bad)


@pytest.mark.parametrize("outcome", [OpOutcome.FAIL, OpOutcome.INDETERMINATE])
def test_phantom_unless_the_emit_was_indeterminate(outcome: OpOutcome) -> None:
    b = Builder()
    b.start()
    b.chunks(range(4))
    b.emit(EmitKind.CHUNK, {"text": "maybe"}, None, outcome=outcome)
    b.done(5)
    b.open("s1")
    for seq in range(4):
        b.c("s1", seq)
    bad = b.deliver("s1", Chunk(seq=4, generation="g1", data={"text": "maybe"}))
    b.d("s1", 5)
    b.close("s1")
    if outcome is OpOutcome.FAIL:
        only(check(b.history), AnomalyKind.PHANTOM, bad)
    else:
        passes(b)


@pytest.mark.parametrize("fenced", [True, False])
def test_abort_not_honoured(fenced: bool) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    b.history.append(
        AbortRequested(
            time=b._now(),
            stream_id="st",
            generation="g1",
            replica="r2",
            user_id="u1",
            acknowledged=True,
            outcome=OpOutcome.OK,
        )
    )
    b.done(2)  # the aborting replica's terminal
    outcome = OpOutcome.FAIL if fenced else OpOutcome.OK
    late = b.emit(EmitKind.CHUNK, chunk_data("g1", 3), 3, outcome=outcome)
    b.open("s1")
    deliver_in_order(b, [0, 1], done_seq=2)
    if fenced:
        passes(b)
    else:
        only(check(b.history), AnomalyKind.ABORT_NOT_HONOURED, late)


@pytest.mark.parametrize("user", ["u2", "u1"])
def test_foreign_delivery(user: str) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    b.done(2)
    b.open("s1", user=user)
    first = b.c("s1", 0)
    deliver_in_order(b, [1], done_seq=2)
    if user == "u2":
        only(check(b.history), AnomalyKind.FOREIGN_DELIVERY, first)
    else:
        passes(b)


@pytest.mark.parametrize("snapshot", [(0, 2), (0, 1, 2)])
def test_snapshot_mismatch(snapshot: tuple[int, ...]) -> None:
    b = one_turn()
    opened = b.open("s2", first_seq=3, snapshot=snapshot)
    b.c("s2", 3)
    b.d("s2", 4)
    b.close("s2")
    if snapshot == (0, 2):
        only(check(b.history), AnomalyKind.SNAPSHOT_MISMATCH, opened)
    else:
        passes(b)


@pytest.mark.parametrize("first", [1, 2])
def test_gap_over_delivered(first: int) -> None:
    b = one_turn()
    b.c("s1", 0)
    b.c("s1", 1)
    gap = b.deliver(
        "s1", Gap(first_seq=first, last_seq=2, generation="g1", reason=GapReason.WRITES_LOST)
    )
    deliver_in_order(b, [3])
    if first == 1:
        only(check(b.history), AnomalyKind.GAP_OVER_DELIVERED, gap)
    else:
        passes(b)


@pytest.mark.parametrize("payload", ["same", "other"])
def test_synthetic_done_rebuilt_from_the_stored_final_event(payload: str) -> None:
    b = one_turn()
    for seq in range(4):
        b.c("s1", seq)
    data: JSONValue = done_data("g1") if payload == "same" else {"final": "other"}
    bad = b.deliver("s1", Done(seq=5, generation="g1", data=data))
    b.close("s1")
    if payload == "same":
        assert passes(b).statistics.synthetic_terminals == 1
    else:
        only(check(b.history), AnomalyKind.CONTENT_MISMATCH, bad)


def test_seq_allocated_twice_is_a_duplicate() -> None:
    b = one_turn(2)
    again = b.emit(EmitKind.CHUNK, {"text": "again"}, 1)
    deliver_in_order(b, [0, 1], done_seq=2)
    only(check(b.history), AnomalyKind.DUPLICATE, again)


# -- a clean history with everything at once ------------------------------------------


def test_clean_multi_session_multi_generation_history_passes() -> None:
    b = two_turns()
    # s1 reads g1 from the start; s2 resumes g1 at seq 2 with chunks 0 and 1 folded in.
    b.open("s1", "g1")
    b.open("s2", "g1", first_seq=2, snapshot=(0, 1))
    b.c("s1", 0)
    b.c("s1", 1)
    b.c("s2", 2)
    b.c("s1", 2)
    b.d("s2", 3)
    b.d("s1", 3)
    b.close("s1")
    b.close("s2")
    # s3 detaches mid-way; s4 is told seq 5 is lost; s5 is superseded by g3.
    b.open("s3", "g2", first_seq=4)
    b.c("s3", 4, "g2")
    b.close("s3", SessionEnd.DETACHED)
    b.open("s4", "g2", first_seq=4)
    b.c("s4", 4, "g2")
    b.deliver("s4", Gap(first_seq=5, last_seq=5, generation="g2", reason=GapReason.NOT_IN_LOG))
    b.d("s4", 6, "g2")
    b.close("s4")
    b.start("g3", start_seq=7)
    b.chunks([7, 8], "g3")
    b.open("s5", "g3", first_seq=7)
    b.c("s5", 7, "g3")
    b.c("s5", 8, "g3")
    # g3 is aborted from replica r2; the abort's done is g3's terminal, the fence holds.
    b.history.append(
        AbortRequested(
            time=b._now(),
            stream_id="st",
            generation=None,
            replica="r2",
            user_id="u1",
            acknowledged=True,
            outcome=OpOutcome.OK,
        )
    )
    b.done(9, "g3")
    b.emit(EmitKind.CHUNK, chunk_data("g3", 10), None, "g3", OpOutcome.FAIL)
    b.d("s5", 9, "g3")
    b.close("s5")
    # g4 on the same stream: its reader is cut off by g5 and told so.
    b.start("g4", start_seq=10)
    b.chunks([10], "g4")
    b.open("s6", "g4", first_seq=10)
    b.c("s6", 10, "g4")
    b.start("g5", start_seq=11)
    b.chunks([11], "g5")
    b.deliver("s6", Failure(seq=11, generation="g4", message=SUPERSEDED))
    b.close("s6")
    b.done(12, "g5")
    b.heal()
    report = passes(b)
    stats = report.statistics
    assert (stats.sessions, stats.generations, stats.gaps_signalled) == (6, 5, 1)
    assert stats.synthetic_terminals == 1
    assert stats.sessions_judged_for_liveness == 5
    assert "ok" in report.summary()
    assert report.to_json()["ok"] is True


def test_expected_for_session_says_what_is_still_owed() -> None:
    b = one_turn()
    b.open("s2", first_seq=2, snapshot=(0, 1))
    b.c("s2", 2)
    expectation = expected_for_session(b.history, "s2")
    assert expectation.owed_seqs == (2, 3, 4)
    assert expectation.terminal_seq == 4
    assert expectation.expected_snapshot_seqs == (0, 1)
    assert expectation.still_owed == (3, 4)
    with pytest.raises(KeyError):
        expected_for_session(b.history, "nobody")


def test_report_renders_as_text_and_json() -> None:
    b = one_turn()
    b.c("s1", 0)
    b.c("s1", 2)
    b.c("s1", 1)
    b.d("s1", 4)
    report = check(b.history)
    assert report.by_kind() == {
        AnomalyKind.REORDERED: 1,
        AnomalyKind.TERMINAL_BEFORE_CHUNKS: 1,
    }
    text = report.summary()
    assert "reordered at record" in text and "events must arrive in seq order" in text
    payload = report.to_json()
    assert payload["ok"] is False
    assert payload["by_kind"] == {"reordered": 1, "terminal_before_chunks": 1}


# -- property: correct histories pass, one mutation gives exactly its class -----------


@dataclass
class Generated:
    records: list[Record]
    #: session -> positions (in ``records``) of its deliveries, for sessions that
    #: received everything they were owed and closed on their terminal.
    complete: dict[str, list[int]]


def _merge(data: st.DataObject, queues: list[list[Record]]) -> list[Record]:
    merged: list[Record] = []
    live = [q for q in queues if q]
    while live:
        q = live[data.draw(st.integers(0, len(live) - 1)) if len(live) > 1 else 0]
        merged.append(q.pop(0))
        live = [q for q in live if q]
    return merged


def _generation_records(
    data: st.DataObject, stream: str, gen: str, start: int, sessions: list[str]
) -> tuple[list[Record], int, set[str]]:
    """One turn: emits first, then its sessions interleaved. Returns the next free seq."""
    now = 0.0
    out: list[Record] = [
        GenerationStarted(
            time=now, stream_id=stream, generation=gen, user_id="u1", replica="r1", start_seq=start
        )
    ]
    seq = start
    chunk_seqs: list[int] = []

    def emitted(kind: EmitKind, payload: JSONValue, outcome: OpOutcome, at: int | None) -> None:
        out.append(
            Emitted(
                time=now,
                stream_id=stream,
                generation=gen,
                replica="r1",
                kind=kind,
                payload_digest=digest(payload),
                outcome=outcome,
                seq=at,
            )
        )

    for _ in range(data.draw(st.integers(0, 5))):
        if data.draw(st.integers(0, 4)) == 0:  # a failed publish, maybe burning a seq
            emitted(EmitKind.CHUNK, {"failed": seq}, OpOutcome.FAIL, None)
            seq += data.draw(st.integers(0, 1))
        emitted(EmitKind.CHUNK, chunk_data(gen, seq), OpOutcome.OK, seq)
        chunk_seqs.append(seq)
        seq += 1
    terminal_seq = seq
    terminal: Done | Failure
    if data.draw(st.booleans()):
        terminal = Done(seq=seq, generation=gen, data=done_data(gen))
        emitted(EmitKind.DONE, done_data(gen), OpOutcome.OK, seq)
    else:
        terminal = Failure(seq=seq, generation=gen, message=f"{gen} failed")
        emitted(EmitKind.ERROR, f"{gen} failed", OpOutcome.OK, seq)
    complete: set[str] = set()
    queues: list[list[Record]] = []
    for name in sessions:
        first = data.draw(st.integers(start, terminal_seq))
        snapshot = tuple(s for s in chunk_seqs if s < first)
        mode = SessionMode.RESUME if first > start else SessionMode.SUBSCRIBE
        queue: list[Record] = [
            SessionOpened(
                time=now,
                session=name,
                stream_id=stream,
                generation=gen,
                user_id="u1",
                owner_id="u1",
                replica="r2",
                mode=mode,
                first_seq=first,
                snapshot_seqs=snapshot,
            )
        ]
        owed: list[StreamEvent] = [
            Chunk(seq=s, generation=gen, data=chunk_data(gen, s)) for s in chunk_seqs if s >= first
        ]
        owed.append(terminal)
        detach = data.draw(st.booleans()) and data.draw(st.booleans())
        if detach:
            owed = owed[: data.draw(st.integers(0, len(owed) - 1))]
        for event in owed:
            payload: JSONValue = event.message if isinstance(event, Failure) else None
            if isinstance(event, Chunk | Done):
                payload = event.data
            queue.append(
                Delivered(time=now, session=name, event=event, payload_digest=digest(payload))
            )
        end = SessionEnd.DETACHED if detach else SessionEnd.TERMINAL
        queue.append(SessionClosed(time=now, session=name, reason=end))
        if not detach:
            complete.add(name)
        queues.append(queue)
    return out + _merge(data, queues), terminal_seq + 1, complete


def generate_correct_history(data: st.DataObject) -> Generated:
    records: list[Record] = []
    complete: set[str] = set()
    counter = 0
    for stream in [f"st{i}" for i in range(data.draw(st.integers(1, 2)))]:
        seq = 0
        for g in range(data.draw(st.integers(1, 3))):
            names = [f"s{counter + k}" for k in range(data.draw(st.integers(0, 3)))]
            counter += len(names)
            more, seq, done = _generation_records(data, stream, f"{stream}g{g}", seq, names)
            records.extend(more)
            complete |= done
    records.append(Healed(time=1.0))
    positions: dict[str, list[int]] = {name: [] for name in complete}
    for i, record in enumerate(records):
        if isinstance(record, Delivered) and record.session in positions:
            positions[record.session].append(i)
    return Generated(records, positions)


def to_history(records: list[Record]) -> History:
    history = History()
    for record in records:
        history.append(record)
    return history


def _is_terminal_at(records: list[Record], position: int) -> bool:
    record = records[position]
    assert isinstance(record, Delivered)
    return isinstance(record.event, Done | Failure)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_correct_histories_pass_and_one_mutation_is_classified(data: st.DataObject) -> None:
    generated = generate_correct_history(data)
    records = generated.records
    report = check(to_history(records))
    assert report.ok, report.summary()
    candidates = sorted(name for name, where in generated.complete.items() if where)
    if not candidates:
        return
    where = generated.complete[data.draw(st.sampled_from(candidates), label="session")]
    k = data.draw(st.integers(0, len(where) - 1), label="delivery")
    ops = ["drop", "duplicate"] + (["swap"] if k + 1 < len(where) else [])
    op = data.draw(st.sampled_from(ops), label="mutation")
    terminal = _is_terminal_at(records, where[k])
    mutated = list(records)
    if op == "drop":
        del mutated[where[k]]
        if terminal:
            expected = AnomalyKind.TERMINAL_MISSING
        elif _is_terminal_at(records, where[k + 1]):
            expected = AnomalyKind.TERMINAL_BEFORE_CHUNKS
        else:
            expected = AnomalyKind.SKIPPED_WITHOUT_GAP
    elif op == "duplicate":
        mutated.insert(where[k] + 1, records[where[k]])
        expected = AnomalyKind.TERMINAL_TWICE if terminal else AnomalyKind.DUPLICATE
    else:
        a, b = where[k], where[k + 1]
        mutated[a], mutated[b] = records[b], records[a]
        later_is_terminal = _is_terminal_at(records, b)
        expected = (
            AnomalyKind.TERMINAL_BEFORE_CHUNKS if later_is_terminal else AnomalyKind.REORDERED
        )
    note_event(f"{op} -> {expected.value}")
    report = check(to_history(mutated))
    assert report.by_kind() == {expected: 1}, report.summary()


# -- speed ---------------------------------------------------------------------------


def big_history(generations: int = 20, chunks: int = 100, sessions: int = 4) -> History:
    b = Builder()
    seq = 0
    for g in range(generations):
        gen = f"g{g}"
        b.start(gen, start_seq=seq)
        b.chunks(range(seq, seq + chunks), gen)
        b.done(seq + chunks, gen)
        for k in range(sessions):
            name = f"{gen}s{k}"
            b.open(name, gen, first_seq=seq)
            for s in range(seq, seq + chunks):
                b.c(name, s, gen)
            b.d(name, seq + chunks, gen)
            b.close(name)
        seq += chunks + 1
    b.heal()
    return b.history


def test_checker_is_fast_enough_for_every_hypothesis_example() -> None:
    history = big_history()
    assert len(history) > 10_000
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        report = check(history)
        best = min(best, time.perf_counter() - began)
    assert report.ok, report.summary()
    per_thousand_ms = best * 1000 / (len(history) / 1000)
    # Target 5 ms per 1k records; the bound is loose so slow CI machines do not flake.
    assert per_thousand_ms < 25, f"{per_thousand_ms:.2f} ms per 1k records"


def test_resume_after_the_generation_ended_gets_only_the_terminal() -> None:
    b = one_turn(2)
    b.close("s1", SessionEnd.DETACHED)
    b.open("s2", first_seq=3, snapshot=(0, 1))
    b.d("s2", 2)
    b.close("s2")
    b.heal()
    passes(b)


def test_records_without_a_history_are_indexed_by_position() -> None:
    b = one_turn()
    b.c("s1", 0)
    jump = b.c("s1", 2)
    b.c("s1", 3)
    b.d("s1", 4)
    raw = [replace(record, index=-1) for record in b.history.records]
    only(check(raw), AnomalyKind.SKIPPED_WITHOUT_GAP, jump)


def test_bound_exceeded_is_flagged_and_its_absence_is_not() -> None:
    from streamcheck.model import BoundExceeded, History, check

    clean = History()
    assert check(clean).ok
    history = History()
    history.append(
        BoundExceeded(
            time=1.0, replica="r0", stream_id="s0", resource="early buffer", value=9, limit=8
        )
    )
    report = check(history)
    assert [(a.kind, a.first_bad) for a in report.anomalies] == [(AnomalyKind.BOUND_EXCEEDED, 0)]
    assert "over the bound of 8" in report.anomalies[0].explanation


@pytest.mark.parametrize("redis_lost_writes", [False, True])
def test_a_second_terminal_is_excused_only_across_lost_writes(redis_lost_writes: bool) -> None:
    # The turn's done (seq 2) was acknowledged; if Redis then lost it, the fence could
    # not know, and an abort's done at seq 10 is what async replication allows.
    b = Builder()
    b.start("g1")
    b.chunks([0, 1], "g1")
    b.done(2, "g1")
    if redis_lost_writes:
        b.history.append(WritesLost(time=b._now(), writes=1))
    second = b.emit(EmitKind.DONE, {"aborted": True}, 10, "g1")
    report = check(b.history)
    if redis_lost_writes:
        assert report.ok, report.summary()
    else:
        only(report, AnomalyKind.TERMINAL_TWICE, second)


@pytest.mark.parametrize("redis_lost_writes", [False, True])
def test_a_chunk_after_the_terminal_is_excused_only_across_lost_writes(
    redis_lost_writes: bool,
) -> None:
    b = Builder()
    b.start("g1")
    b.chunks([0], "g1")
    b.done(1, "g1")
    if redis_lost_writes:
        b.history.append(WritesLost(time=b._now(), writes=1))
    late = b.emit(EmitKind.CHUNK, chunk_data("g1", 5), 5, "g1")
    report = check(b.history)
    if redis_lost_writes:
        assert report.ok, report.summary()
    else:
        only(report, AnomalyKind.EVENT_AFTER_TERMINAL, late)


def test_lost_writes_never_excuse_a_reused_seq() -> None:
    b = Builder()
    b.start("g1")
    b.chunks([0, 1], "g1")
    b.history.append(WritesLost(time=b._now(), writes=1))
    again = b.emit(EmitKind.CHUNK, {"other": True}, 1, "g1")
    assert AnomalyKind.DUPLICATE in check(b.history).by_kind(), again


@pytest.mark.parametrize("same_replica", [True, False])
def test_emits_complete_out_of_seq_order_only_across_replicas(same_replica: bool) -> None:
    # Found by the real-Redis tier under a slow network, where the checker reported
    # this as reordered: a chunk got seq 3 and an abort's done (from another replica)
    # seq 4, but the chunk's acknowledgement arrived later. One replica's emits are sequential, so
    # there the same records mean seqs went backwards.
    b = Builder()
    b.start("g1")
    b.chunks([0, 1, 2], "g1")

    def emitted(replica: str, kind: EmitKind, seq: int, payload: JSONValue) -> int:
        return b.history.append(
            Emitted(
                time=b._now(),
                stream_id=b.stream,
                generation="g1",
                replica=replica,
                kind=kind,
                payload_digest=digest(payload),
                outcome=OpOutcome.OK,
                seq=seq,
            )
        ).index

    emitted("r1" if same_replica else "r2", EmitKind.DONE, 4, done_data("g1"))
    late = emitted("r1", EmitKind.CHUNK, 3, chunk_data("g1", 3))
    report = check(b.history)
    if same_replica:
        only(report, AnomalyKind.REORDERED, late)
    else:
        assert report.ok, report.summary()


# -- histories that cannot be judged -------------------------------------------------------


def _malformed_histories() -> dict[str, list[Record]]:
    b = one_turn()
    deliver_in_order(b, [0, 1, 2, 3])
    good = list(b.history.records)
    opened = next(i for i, r in enumerate(good) if isinstance(r, SessionOpened))
    delivered = next(i for i, r in enumerate(good) if isinstance(r, Delivered))
    delivery = good[delivered]
    assert isinstance(delivery, Delivered)
    stranger = replace(delivery, session="nobody")
    late = replace(good[-1], time=good[0].time - 1)
    emitted = good[1]
    assert isinstance(emitted, Emitted)
    succeeded_without_seq = replace(emitted, seq=None)
    return {
        "which was never opened": [*good[:delivered], stranger, *good[delivered:]],
        "a second time": [*good, replace(good[opened], time=good[-1].time)],
        "is earlier than record": [*good[:-1], late],
        "succeeded without a seq": [good[0], succeeded_without_seq, *good[2:]],
    }


@pytest.mark.parametrize("problem", list(_malformed_histories()))
def test_a_malformed_history_is_unknown_never_a_pass(problem: str) -> None:
    report = check(_malformed_histories()[problem])
    assert report.verdict is Verdict.UNKNOWN and not report.ok
    assert report.unknown_reason is not None and problem in report.unknown_reason
    assert "unknown" in report.summary() and report.to_json()["verdict"] == "unknown"


def test_a_clean_history_is_ok_and_an_anomalous_one_is_anomaly() -> None:
    b = one_turn()
    deliver_in_order(b, [0, 1, 2, 3])
    assert check(b.history).verdict is Verdict.OK
    b = one_turn()
    deliver_in_order(b, [0, 2, 1, 3])
    assert check(b.history).verdict is Verdict.ANOMALY


@pytest.mark.parametrize(
    ("by_abort", "fenced", "lost"),
    [(True, False, False), (True, True, False), (False, False, False), (True, False, True)],
)
def test_terminal_after_an_abort_stopped_the_generator(
    by_abort: bool, fenced: bool, lost: bool
) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    stopped = b.history.append(
        GeneratorStopped(time=b._now(), stream_id="st", generation="g1", by_abort=by_abort)
    ).index
    if lost:
        b.history.append(WritesLost(time=b._now(), writes=1))
    # The stopped generator ends its turn at once: refused while the abort holds the turn.
    own = b.emit(
        EmitKind.DONE,
        done_data("g1"),
        2,
        outcome=OpOutcome.FAIL if fenced else OpOutcome.OK,
    )
    if by_abort and not fenced and not lost:
        only(check(b.history), AnomalyKind.TERMINAL_AFTER_STOP, own)
        assert f"(record {stopped})" in check(b.history).anomalies[0].explanation
    else:
        assert AnomalyKind.TERMINAL_AFTER_STOP not in check(b.history).kinds()


def test_the_aborts_own_terminal_after_the_stop_is_no_anomaly() -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    b.history.append(GeneratorStopped(time=b._now(), stream_id="st", generation="g1"))
    b.history.append(
        Emitted(
            time=b._now(),
            stream_id="st",
            generation="g1",
            replica="r1",
            kind=EmitKind.DONE,
            payload_digest=digest({"aborted": True}),
            outcome=OpOutcome.OK,
            seq=2,
            by_abort=True,
        )
    )
    assert AnomalyKind.TERMINAL_AFTER_STOP not in check(b.history).kinds()


# -- judgements that need a world recording its faults ------------------------------------


def _recorded_turn(chunks: int = 4) -> Builder:
    """``one_turn`` in a history whose producer records its faults."""
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now()))
    b.start()
    b.chunks(range(chunks))
    b.done(chunks)
    b.open("s1")
    return b


def _fault(b: Builder, fault: FaultKind, detail: str = "") -> int:
    return b.history.append(FaultInjected(time=b._now(), fault=fault, detail=detail)).index


@pytest.mark.parametrize("cause", [None, FaultKind.FAILOVER, FaultKind.DROP, "writes-lost"])
def test_a_gap_over_an_emitted_seq_needs_a_failover(cause: FaultKind | str | None) -> None:
    b = _recorded_turn()
    if cause == "writes-lost":
        b.history.append(WritesLost(time=b._now(), writes=1))
    elif isinstance(cause, FaultKind):
        _fault(b, cause)
    b.c("s1", 0)
    gap = b.deliver(
        "s1", Gap(first_seq=1, last_seq=2, generation="g1", reason=GapReason.NOT_IN_LOG)
    )
    b.c("s1", 3)
    b.d("s1", 4)
    b.close("s1")
    if cause in (None, FaultKind.DROP):
        # A lost pub/sub message is repaired from the log: it is no reason for a gap.
        only(check(b.history), AnomalyKind.GAP_WITHOUT_LOSS, gap)
    else:
        passes(b)


def test_a_gap_over_seqs_nobody_emitted_is_no_anomaly() -> None:
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now()))
    b.start()
    b.chunks([0, 3])  # seqs 1 and 2 went to emits whose outcome is unknown or refused
    b.done(4)
    b.open("s1")
    b.c("s1", 0)
    b.deliver("s1", Gap(first_seq=1, last_seq=2, generation="g1", reason=GapReason.NOT_IN_LOG))
    b.c("s1", 3)
    b.d("s1", 4)
    b.close("s1")
    passes(b)


def test_gaps_are_not_judged_for_loss_when_the_producer_does_not_record_faults() -> None:
    b = one_turn()
    b.c("s1", 0)
    b.deliver("s1", Gap(first_seq=1, last_seq=2, generation="g1", reason=GapReason.NOT_IN_LOG))
    b.c("s1", 3)
    b.d("s1", 4)
    b.close("s1")
    passes(b)


@pytest.mark.parametrize("cause", [None, FaultKind.DROP, FaultKind.DELAY, "after"])
def test_a_slow_path_needs_a_fault_before_it(cause: FaultKind | str | None) -> None:
    b = _recorded_turn()
    if isinstance(cause, FaultKind):
        _fault(b, cause)
    deliver_in_order(b, [0, 1, 2, 3])
    slow = b.history.append(
        SlowPath(time=b._now(), replica="r2", reorder_timeouts=1, log_repaired=2)
    ).index
    if cause == "after":
        _fault(b, FaultKind.DISCONNECT)
    if cause is None or cause == "after":
        only(check(b.history), AnomalyKind.SLOW_PATH_WITHOUT_CAUSE, slow)
        assert "r2" in check(b.history).anomalies[0].explanation
    else:
        passes(b)


@pytest.mark.parametrize(
    ("timeouts", "repaired", "raced", "anomaly"),
    [(0, 2, 2, False), (0, 2, 1, True), (1, 2, 2, True), (0, 0, 0, False)],
)
def test_a_log_read_that_only_raced_the_live_copies_needs_no_cause(
    timeouts: int, repaired: int, raced: int, anomaly: bool
) -> None:
    b = _recorded_turn()
    deliver_in_order(b, [0, 1, 2, 3])
    slow = b.history.append(
        SlowPath(
            time=b._now(),
            replica="r2",
            reorder_timeouts=timeouts,
            log_repaired=repaired,
            raced=raced,
        )
    ).index
    if anomaly:
        only(check(b.history), AnomalyKind.SLOW_PATH_WITHOUT_CAUSE, slow)
    else:
        passes(b)


def _abort(b: Builder, acknowledged: bool = True) -> int:
    return b.history.append(
        AbortRequested(
            time=b._now(),
            stream_id="st",
            generation="g1",
            replica="r2",
            user_id="u1",
            acknowledged=acknowledged,
            outcome=OpOutcome.OK,
        )
    ).index


def _invoked_chunk(b: Builder, seq: int, invoked_index: int, outcome: OpOutcome) -> int:
    return b.history.append(
        Emitted(
            time=b._now(),
            stream_id="st",
            generation="g1",
            replica="r1",
            kind=EmitKind.CHUNK,
            payload_digest=digest(chunk_data("g1", seq)),
            outcome=outcome,
            seq=seq if outcome is OpOutcome.OK else None,
            invoked_index=invoked_index,
        )
    ).index


@pytest.mark.parametrize(
    ("end", "invoked", "outcome"),
    [
        ("done", "after", OpOutcome.OK),
        ("abort", "after", OpOutcome.OK),
        ("done", "after", OpOutcome.FAIL),
        ("done", "before", OpOutcome.OK),
    ],
)
def test_an_emit_invoked_after_the_end_was_acknowledged_must_be_refused(
    end: str, invoked: str, outcome: OpOutcome
) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    before = len(b.history)
    ended = b.done(2) if end == "done" else _abort(b)
    # A chunk with a lower seq than the terminal (so no seq rule sees it), acknowledged
    # after the end was: only when the emit was invoked matters.
    late = _invoked_chunk(
        b, 1 if end == "done" else 2, before if invoked == "before" else ended + 1, outcome
    )
    kinds = check(b.history).kinds()
    if invoked == "after" and outcome is OpOutcome.OK:
        assert AnomalyKind.EMIT_AFTER_END in kinds, check(b.history).summary()
        first = next(a for a in check(b.history).anomalies if a.kind is AnomalyKind.EMIT_AFTER_END)
        assert (first.first_bad, first.last_good) == (late, ended)
    else:
        assert AnomalyKind.EMIT_AFTER_END not in kinds, check(b.history).summary()


@pytest.mark.parametrize(
    "what", ["never-stopped", "stopped", "crashed", "ended-itself", "unhealed"]
)
def test_an_acknowledged_abort_must_reach_its_generator(what: str) -> None:
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now()))
    b.start()
    b.chunks(range(2))
    if what == "ended-itself":
        b.history.append(
            Emitted(
                time=b._now(),
                stream_id="st",
                generation="g1",
                replica="r1",
                kind=EmitKind.DONE,
                payload_digest=digest(done_data("g1")),
                outcome=OpOutcome.FAIL,
                invoked_index=len(b.history),
            )
        )
    abort = _abort(b)
    if what == "stopped":
        b.history.append(GeneratorStopped(time=b._now(), stream_id="st", generation="g1"))
    if what == "crashed":
        _fault(b, FaultKind.CRASH, "r1")  # the generating replica (Builder.start)
    healed = None if what == "unhealed" else b.heal()
    if what == "never-stopped":
        only(check(b.history), AnomalyKind.ABORT_NOT_DELIVERED, healed or -1)
        assert check(b.history).anomalies[0].last_good == abort
    else:
        passes(b)


@pytest.mark.parametrize("terminal", ["own", "abort's"])
def test_readers_get_the_aborts_terminal_when_the_caller_was_told_aborted(terminal: str) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    own: JSONValue = done_data("g1")
    aborted: JSONValue = {"final": "g1", "aborted": True}
    # The generator's done went out with its outcome unknown; the abort's terminal, seq 2,
    # is the one the caller was told about.
    b.emit(EmitKind.DONE, own, None, outcome=OpOutcome.INDETERMINATE)
    b.history.append(
        Emitted(
            time=b._now(),
            stream_id="st",
            generation="g1",
            replica="r2",
            kind=EmitKind.DONE,
            payload_digest=digest(aborted),
            outcome=OpOutcome.OK,
            seq=2,
            by_abort=True,
        )
    )
    _abort(b)
    b.open("s1")
    b.c("s1", 0)
    b.c("s1", 1)
    got = b.deliver(
        "s1",
        Done(seq=2, generation="g1", data=own if terminal == "own" else aborted),
    )
    b.close("s1")
    if terminal == "own":
        assert AnomalyKind.ABORT_OUTCOME_MISMATCH in check(b.history).kinds()
        first = next(
            a for a in check(b.history).anomalies if a.kind is AnomalyKind.ABORT_OUTCOME_MISMATCH
        )
        assert first.first_bad == got
    else:
        passes(b)


def _job(b: Builder, generation: str | None, status: str | None) -> int:
    return b.history.append(
        JobObserved(time=b._now(), stream_id="st", generation=generation, status=status)
    ).index


@pytest.mark.parametrize(
    ("states", "bad_at"),
    [
        ([("g1", "running"), ("g1", "complete"), ("g1", "aborted")], 2),
        ([("g1", "running"), ("g1", "error"), ("g1", "running")], 2),
        ([("g1", "running"), (None, None), ("g1", "complete")], 2),
        ([("g1", "running"), ("g2", "running"), ("g1", "complete")], 2),
        ([("g1", "running"), ("g1", "complete"), (None, None), ("g2", "running")], None),
        ([("g1", "running"), ("g1", "running"), ("g1", "error")], None),
    ],
)
def test_job_store_states_follow_the_status_table_and_never_resurrect(
    states: list[tuple[str | None, str | None]], bad_at: int | None
) -> None:
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now()))
    indexes = [_job(b, generation, status) for generation, status in states]
    if bad_at is None:
        passes(b)
    else:
        only(check(b.history), AnomalyKind.JOB_STATUS_ILLEGAL, indexes[bad_at])


def test_a_job_state_change_across_a_failover_is_excused() -> None:
    b = Builder()
    _job(b, "g1", "running")
    _job(b, "g1", "complete")
    _fault(b, FaultKind.FAILOVER)
    _job(b, "g1", "running")  # the promoted replica had not seen the completion
    passes(b)


def test_a_keyspace_problem_is_an_anomaly() -> None:
    b = _recorded_turn()
    deliver_in_order(b, [0, 1, 2, 3])
    problem = b.history.append(
        KeyspaceProblem(time=b._now(), key="stream:{st}:job", problem="has no TTL")
    ).index
    only(check(b.history), AnomalyKind.KEYSPACE_INVALID, problem)
    assert "has no TTL" in check(b.history).anomalies[0].explanation


@pytest.mark.parametrize("lost", [True, False])
def test_a_done_rebuilt_from_a_refused_done_is_excused_only_across_lost_writes(lost: bool) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    b.done(2)  # the turn's terminal, on the log until Redis loses it
    stopped: JSONValue = {"final": "g1", "stopped": True}
    b.emit(EmitKind.DONE, stopped, None, outcome=OpOutcome.FAIL)  # refused, yet stored
    if lost:
        b.history.append(WritesLost(time=b._now(), writes=3))
    b.open("s1", first_seq=2, snapshot=(0, 1))
    rebuilt = b.deliver("s1", Done(seq=5, generation="g1", data=stopped))
    b.close("s1")
    if lost:
        passes(b)
    else:
        only(check(b.history), AnomalyKind.CONTENT_MISMATCH, rebuilt)


@pytest.mark.parametrize("waited", [299.0, 300.0])
def test_a_gap_is_excused_once_the_log_may_have_expired(waited: float) -> None:
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now(), log_ttl_s=300.0))
    started = b.start()
    b.chunks([0])
    b.open("s1")
    b.clock = b.history.records[started].time + waited - 1.0  # the gap comes next
    gap = b.deliver(
        "s1", Gap(first_seq=0, last_seq=0, generation="g1", reason=GapReason.NOT_IN_LOG)
    )
    if waited < 300.0:
        only(check(b.history), AnomalyKind.GAP_WITHOUT_LOSS, gap)
    else:
        passes(b)


@pytest.mark.parametrize("payload", ["own", "the next turn's"])
def test_a_rebuilt_done_whose_made_up_seq_a_later_turn_allocated_is_no_leak(payload: str) -> None:
    b = Builder()
    b.start()
    b.chunks(range(2))
    b.done(2)
    b.open("s1", first_seq=2, snapshot=(0, 1))
    # The reader rebuilt the done from the job at its frontier, seq 3, which the next
    # turn then allocated for its own done.
    data = done_data("g1") if payload == "own" else done_data("g2")
    got = b.deliver("s1", Done(seq=3, generation="g1", data=data))
    b.close("s1")
    b.start("g2", start_seq=3)
    b.done(3, "g2")
    if payload == "own":
        passes(b)
    else:
        leaks = [
            a for a in check(b.history).anomalies if a.kind is AnomalyKind.CROSS_GENERATION_LEAK
        ]
        assert [a.first_bad for a in leaks] == [got], check(b.history).summary()


@pytest.mark.parametrize("second", ["skips", "receives", "gap", "stops-before", "writes-lost"])
def test_an_unacknowledged_emit_one_reader_received_reaches_every_reader(second: str) -> None:
    """A chunk whose emit's reply was lost (INDETERMINATE) and then retried: the first
    attempt was published at seq 1 (s1 received it), the retry at seq 2."""
    b = Builder()
    b.start()
    b.chunks([0])
    b.emit(EmitKind.CHUNK, chunk_data("g1", 1), None, outcome=OpOutcome.INDETERMINATE)
    b.emit(EmitKind.CHUNK, chunk_data("g1", 1), 2)
    b.done(3)
    b.open("s1")
    b.open("s2")
    for seq in (0, 1):
        b.c("s1", seq)
    b.deliver("s1", Chunk(seq=2, generation="g1", data=chunk_data("g1", 1)))
    b.d("s1", 3)
    b.close("s1")
    b.c("s2", 0)
    if second == "writes-lost":
        b.history.append(WritesLost(time=b._now(), writes=1))
    if second == "receives":
        b.c("s2", 1)
    elif second == "gap":
        b.deliver("s2", Gap(first_seq=1, last_seq=1, generation="g1", reason=GapReason.NOT_IN_LOG))
    if second != "stops-before":
        jumped = b.deliver("s2", Chunk(seq=2, generation="g1", data=chunk_data("g1", 1)))
        b.d("s2", 3)
        b.close("s2")
    if second in ("skips", "writes-lost"):
        report = check(b.history)
        kinds = [(a.kind, a.first_bad) for a in report.anomalies]
        expected = (AnomalyKind.EMIT_SEEN_INCONSISTENTLY, jumped)
        assert (expected in kinds) == (second == "skips"), report.summary()
    else:
        passes(b)


@pytest.mark.parametrize(("silent_for", "lost"), [(299.0, True), (300.0, False)])
def test_a_turn_ended_for_a_reader_after_its_log_may_have_expired_owes_no_chunks(
    silent_for: float, lost: bool
) -> None:
    """A reader attaches (from an old cursor) once nothing was published on the stream
    for the log's TTL: a made-up end without the turn's chunks is all it can get."""
    b = Builder()
    b.history.append(FaultsRecorded(time=b._now(), log_ttl_s=300.0))
    b.start()
    b.chunks([0, 1])
    b.clock += silent_for - 2.0  # the reader opens, then ends, a second apart
    b.open("s1")
    end = b.deliver("s1", Failure(seq=0, generation="g1", message="producer lost"))
    b.close("s1")
    if lost:
        only(check(b.history), AnomalyKind.LOST, end)
    else:
        passes(b)
