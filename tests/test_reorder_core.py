"""The reorder buffer driven by hand, without trio or Redis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamcheck.impl._log import LogRow, LostWrites
from streamcheck.impl._reorder import SUPERSEDED, ReorderBuffer, Step
from streamcheck.model import Chunk, Done, Failure, Gap, GapReason, StreamEvent

G = "g1"


def chunk(seq: int, gen: str = G) -> Chunk:
    return Chunk(seq=seq, generation=gen, data={"n": seq})


def done(seq: int, gen: str = G) -> Done:
    return Done(seq=seq, generation=gen, data={"final": True})


def make(start: int = 0, *, capacity: int = 100) -> ReorderBuffer:
    return ReorderBuffer(
        generation=G, start_seq=start, now=0.0, timeout=0.5, capacity=capacity, idle_probe=2.0
    )


def live(start: int = 0, **kw: int) -> ReorderBuffer:
    """A buffer past its (empty) initial catch-up."""
    buf = make(start, **kw)
    step = buf.begin(0.0)
    assert step.fetch_from == start
    buf.apply_log([], exhausted=True, now=0.0)
    return buf


def seqs(events: list[StreamEvent]) -> list[int]:
    return [e.seq for e in events if not isinstance(e, Gap)]


def test_in_order_delivery_passes_straight_through() -> None:
    buf = live()
    delivered = []
    for i in range(3):
        delivered += buf.offer(chunk(i), 0.1).deliver
    assert seqs(delivered) == [0, 1, 2]


def test_out_of_order_messages_are_reordered() -> None:
    buf = live()
    assert buf.offer(chunk(1), 0.1).deliver == []
    assert buf.offer(chunk(2), 0.1).deliver == []
    step = buf.offer(chunk(0), 0.2)
    assert seqs(step.deliver) == [0, 1, 2]
    assert step.wake_at == 0.2 + 2.0  # back to the idle probe


def test_duplicates_are_dropped() -> None:
    buf = live()
    buf.offer(chunk(0), 0.0)
    assert buf.offer(chunk(0), 0.0).deliver == []
    buf.offer(chunk(2), 0.0)
    assert buf.offer(chunk(2), 0.0).deliver == []
    assert buf.statistics().duplicates_dropped == 2


def test_terminal_waits_behind_missing_chunks_and_ends_the_subscription() -> None:
    buf = live()
    assert buf.offer(done(2), 0.0).deliver == []
    buf.offer(chunk(1), 0.0)
    step = buf.offer(chunk(0), 0.0)
    assert seqs(step.deliver) == [0, 1, 2]
    assert step.finished
    assert buf.offer(chunk(3), 0.0).deliver == []


def test_gap_not_filled_in_time_is_repaired_from_the_log() -> None:
    buf = live()
    step = buf.offer(chunk(1), 1.0)
    assert step.wake_at == 1.5  # 500 ms from the first parked message
    assert buf.on_timer(1.2).fetch_from is None  # too early
    repair = buf.on_timer(1.5)
    assert repair.fetch_from == 0
    step = buf.apply_log([chunk(0), chunk(1)], exhausted=True, now=1.6)
    assert seqs(step.deliver) == [0, 1]
    assert not any(isinstance(e, Gap) for e in step.deliver)


def test_gap_missing_from_the_log_becomes_a_typed_gap_event() -> None:
    # Regression: LibreChat's force-flush skipped seq 0 silently after 500 ms.
    buf = live()
    buf.offer(chunk(2), 1.0)
    assert buf.on_timer(1.5).fetch_from == 0
    step = buf.apply_log([chunk(2)], exhausted=True, now=1.6)
    assert step.deliver == [
        Gap(first_seq=0, last_seq=1, generation=G, reason=GapReason.NOT_IN_LOG),
        chunk(2),
    ]


def test_a_parked_message_the_log_does_not_hold_is_dropped_without_a_gap() -> None:
    # Heard live before the read, absent from the log: the script logs before it
    # publishes, so the channel alone proves nothing (a forged seq far ahead).
    buf = live()
    buf.offer(chunk(3), 1.0)
    assert buf.on_timer(1.5).fetch_from == 0
    step = buf.apply_log([], exhausted=True, now=1.6)
    assert step.deliver == []
    assert buf.next_seq == 0 and buf.statistics().pending == 0
    assert buf.statistics().foreign_hints == 1
    # The frontier did not move: the real seqs are delivered as they come.
    assert seqs(buf.offer(chunk(0), 1.7).deliver) == [0]
    # A seq the log shows later is still delivered from the log.
    buf.offer(chunk(3), 1.8)
    assert buf.on_timer(2.3).fetch_from == 1
    step = buf.apply_log([chunk(1), chunk(2), chunk(3)], exhausted=True, now=2.4)
    assert seqs(step.deliver) == [1, 2, 3]


def test_a_message_parked_after_the_read_began_is_kept() -> None:
    buf = live()
    buf.offer(chunk(3), 1.0)
    assert buf.on_timer(1.5).fetch_from == 0
    buf.offer(chunk(5), 1.55)  # heard while the read was in flight: not yet disproved
    buf.apply_log([], exhausted=True, now=1.6)
    stats = buf.statistics()
    assert (stats.pending, stats.foreign_hints) == (1, 1)


def test_capacity_triggers_an_immediate_log_read() -> None:
    buf = live(capacity=3)
    buf.offer(chunk(1), 0.0)
    buf.offer(chunk(2), 0.0)
    assert buf.offer(chunk(3), 0.0).fetch_from == 0


def test_deferred_attachment_parks_live_traffic_until_the_log_catch_up() -> None:
    buf = make(start=5)
    assert buf.begin(0.0).fetch_from == 5
    # Live traffic during catch-up: parked, no timer, no capacity flush.
    assert buf.offer(chunk(8), 0.1).deliver == []
    assert buf.on_timer(10.0).fetch_from is None  # a read is already in flight
    step = buf.apply_log([chunk(5), chunk(6), chunk(7)], exhausted=True, now=0.2)
    assert seqs(step.deliver) == [5, 6, 7, 8]
    assert not buf.deferred


def test_catch_up_pages_until_the_log_is_exhausted() -> None:
    buf = make(start=0)
    buf.begin(0.0)
    step = buf.apply_log([chunk(0), chunk(1)], exhausted=False, now=0.0)
    assert step.fetch_from == 2
    assert buf.deferred
    step = buf.apply_log([chunk(2)], exhausted=True, now=0.0)
    assert seqs(step.deliver) == [2]
    assert not buf.deferred


def test_preloaded_early_buffer_is_replayed_once_and_log_duplicates_are_dropped() -> None:
    buf = make(start=0)
    step = buf.preload([chunk(0), chunk(1)], 0.0)
    assert seqs(step.deliver) == [0, 1]
    assert buf.begin(0.0).fetch_from == 2
    buf.offer(chunk(1), 0.0)  # the pub/sub copy of a replayed event
    step = buf.apply_log([chunk(2)], exhausted=True, now=0.0)
    assert seqs(step.deliver) == [2]


def test_preload_stops_at_a_hole() -> None:
    buf = make(start=0)
    step = buf.preload([chunk(0), chunk(2)], 0.0)
    assert seqs(step.deliver) == [0]
    assert buf.next_seq == 1


def test_other_generations_fill_their_slots_silently() -> None:
    buf = make(start=0)
    buf.begin(0.0)
    step = buf.apply_log([chunk(0), chunk(1, gen="old")], exhausted=True, now=0.0)
    # "old" cannot be older than our start (fenced), so it is a newer turn: we end.
    assert step.deliver[-1] == Failure(seq=1, generation=G, message=SUPERSEDED)
    assert step.finished


def test_idle_probe_reads_the_log_and_reports_silence() -> None:
    buf = live()
    assert buf.on_timer(1.0).fetch_from is None
    probe = buf.on_timer(2.0)
    assert probe.fetch_from == 0
    step = buf.apply_log([], exhausted=True, now=2.1)
    assert step.idle_and_empty
    assert step.wake_at is not None and step.wake_at > 2.1


def test_idle_probe_finds_the_lost_tail() -> None:
    buf = live()
    buf.on_timer(2.0)
    step = buf.apply_log([chunk(0), done(1)], exhausted=True, now=2.1)
    assert seqs(step.deliver) == [0, 1]
    assert step.finished


def test_a_duplicate_keeps_the_idle_probe_armed() -> None:
    buf = live()
    buf.offer(chunk(0), 0.0)
    buf.offer(chunk(2), 0.1)
    for duplicate in (chunk(0), chunk(2)):  # below the frontier, already parked
        step = buf.offer(duplicate, 0.2)
        assert not step.deliver and step.wake_at is not None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("offer"), st.integers(0, 6)),
            st.tuples(st.just("done"), st.integers(0, 6)),
            st.tuples(st.just("timer"), st.floats(0.0, 3.0)),
            st.tuples(st.just("resync"), st.just(0)),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_a_live_reader_always_has_a_timer_or_a_read_in_flight(
    inputs: list[tuple[str, float]], log_has_everything: bool
) -> None:
    """Whatever arrives, a step of a reader that has not finished either asks for a log
    read or says when to wake it: otherwise the shell would never call it again."""
    buf = live()
    now = 0.0
    published: dict[int, Chunk | Done] = {}
    for kind, value in inputs:
        if kind == "timer":
            now += value
            step = buf.on_timer(now)
        elif kind == "resync":
            step = buf.resync(now)
        else:
            seq = int(value)
            event = done(seq) if kind == "done" else chunk(seq)
            published.setdefault(seq, event)
            step = buf.offer(published[seq], now)
        while step.fetch_from is not None:
            rows: list[LogRow] = [published[s] for s in sorted(published) if s >= step.fetch_from]
            step = buf.apply_log(rows if log_has_everything else [], exhausted=True, now=now)
        assert step.finished or step.wake_at is not None, (kind, value, buf)
        if step.finished:
            return


def test_failed_read_is_retried_after_the_timeout() -> None:
    buf = live()
    buf.offer(chunk(1), 1.0)
    buf.on_timer(1.5)
    step = buf.fetch_failed(1.6)
    assert step.wake_at == 2.1
    assert buf.on_timer(2.1).fetch_from == 0


def test_each_input_one_at_a_time_matches_all_at_once() -> None:
    order = [3, 1, 0, 2, 5, 4]
    buf = live()
    out: list[StreamEvent] = []
    for s in order:
        step: Step = buf.offer(chunk(s), 0.0)
        out += step.deliver
    assert seqs(out) == [0, 1, 2, 3, 4, 5]


def test_statistics_tell_late_fills_from_log_repairs() -> None:
    buf = live()
    buf.offer(chunk(1), 0.0)
    buf.offer(chunk(0), 0.1)  # the missing one arrived live: a late fill
    buf.offer(chunk(3), 1.0)
    buf.on_timer(1.5)  # seq 2 never came: repaired from the log
    buf.apply_log([chunk(2), chunk(3)], exhausted=True, now=1.6)
    stats = buf.statistics()
    assert (stats.late_fills, stats.repairs, stats.repaired_events) == (1, 1, 2)


# -- writes Redis lost (failover or restart) ---------------------------------------


def lost(first: int, last: int) -> LostWrites:
    return LostWrites(first_seq=first, last_seq=last)


def test_a_lost_writes_row_becomes_a_writes_lost_gap() -> None:
    buf = live()
    buf.offer(chunk(0), 0.0)
    step = buf.on_timer(2.0)  # idle probe
    assert step.fetch_from == 1
    step = buf.apply_log([lost(1, 2), chunk(3)], exhausted=True, now=2.0)
    assert step.deliver == [
        Gap(first_seq=1, last_seq=2, generation=G, reason=GapReason.WRITES_LOST),
        chunk(3),
    ]


def test_a_lost_writes_row_is_split_where_the_log_merely_lacks_seqs() -> None:
    buf = live()
    step = buf.on_timer(2.0)
    step = buf.apply_log([lost(2, 3)], exhausted=True, now=2.0)
    assert [(g.first_seq, g.last_seq, g.reason) for g in step.deliver if isinstance(g, Gap)] == [
        (0, 1, GapReason.NOT_IN_LOG),
        (2, 3, GapReason.WRITES_LOST),
    ]
    assert buf.next_seq == 4


def test_seqs_heard_live_before_redis_lost_them_are_still_delivered() -> None:
    buf = live()
    buf.offer(chunk(1), 0.0)  # parked: seq 0 is missing
    step = buf.on_timer(0.5)
    assert step.fetch_from == 0
    step = buf.apply_log([lost(0, 2)], exhausted=True, now=0.5)
    assert step.deliver == [
        Gap(first_seq=0, last_seq=0, generation=G, reason=GapReason.WRITES_LOST),
        chunk(1),
        Gap(first_seq=2, last_seq=2, generation=G, reason=GapReason.WRITES_LOST),
    ]


def test_a_lost_writes_row_behind_the_frontier_is_ignored() -> None:
    buf = live()
    buf.offer(chunk(0), 0.0)
    buf.offer(chunk(1), 0.0)
    buf.on_timer(2.0)
    assert buf.apply_log([lost(0, 1)], exhausted=True, now=2.0).deliver == []


def test_superseded_reader_is_told_of_published_seqs_that_never_arrived() -> None:
    # The producer here was acknowledged seqs 0 and 1; a failover lost both and the
    # next turn reused seq 0. Ending "superseded" alone would hide a hole.
    buf = live()
    buf.note_published(1)
    step = buf.offer(chunk(0, gen="g2"), 0.1)
    assert step.deliver == [] and step.fetch_from == 0  # live: only a hint
    step = buf.apply_log([chunk(0, gen="g2")], exhausted=True, now=0.2)
    assert step.deliver == [
        Gap(first_seq=0, last_seq=1, generation=G, reason=GapReason.WRITES_LOST),
        Failure(seq=2, generation=G, message=SUPERSEDED),
    ]
    assert step.finished


def test_a_terminal_from_the_job_record_follows_a_gap_for_known_lost_seqs() -> None:
    buf = live()
    buf.note_published(0)
    step = buf.end_with(Failure(seq=0, generation=G, message="producer lost"), 40.0)
    assert step.deliver == [
        Gap(first_seq=0, last_seq=0, generation=G, reason=GapReason.WRITES_LOST),
        Failure(seq=1, generation=G, message="producer lost"),
    ]


def test_known_published_seqs_that_did_arrive_need_no_gap() -> None:
    buf = live()
    buf.note_published(0)
    buf.offer(chunk(0), 0.0)
    step = buf.end_with(Failure(seq=1, generation=G, message="producer lost"), 40.0)
    assert step.deliver == [Failure(seq=1, generation=G, message="producer lost")]


def test_a_lost_row_splits_into_missing_lost_and_possibly_lost() -> None:
    # Seqs 0..1 simply are not in the log, 2..3 a replica saw before Redis lost them,
    # 4..9 were skipped because the server changed: they may never have existed.
    buf = live()
    buf.on_timer(2.0)
    row = LostWrites(first_seq=2, last_seq=9, possibly_from=4)
    step = buf.apply_log([row], exhausted=True, now=2.0)
    assert [(g.first_seq, g.last_seq, g.reason) for g in step.deliver if isinstance(g, Gap)] == [
        (0, 1, GapReason.NOT_IN_LOG),
        (2, 3, GapReason.WRITES_LOST),
        (4, 9, GapReason.POSSIBLY_LOST),
    ]


def test_a_live_message_in_the_unwitnessed_part_of_a_lost_row_is_dropped() -> None:
    # A forged seq that the failover's skip later swept into a lost range: no replica
    # saw it, so it is no content; the range is a possibly-lost gap.
    buf = live()
    buf.offer(chunk(1), 0.0)  # witnessed lost range: delivered
    buf.offer(chunk(6), 0.0)  # in the skipped range: heard on the channel only
    assert buf.on_timer(0.5).fetch_from == 0
    row = LostWrites(first_seq=1, last_seq=9, possibly_from=4)
    step = buf.apply_log([row], exhausted=True, now=0.6)
    assert [
        (e.seq if not isinstance(e, Gap) else (e.first_seq, e.last_seq, e.reason))
        for e in step.deliver
    ] == [
        (0, 0, GapReason.NOT_IN_LOG),
        1,
        (2, 3, GapReason.WRITES_LOST),
        (4, 9, GapReason.POSSIBLY_LOST),
    ]
    assert buf.statistics().foreign_hints == 1
