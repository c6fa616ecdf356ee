"""Per-subscriber ordering, de-duplication and gap repair (sans-IO).

A :class:`ReorderBuffer` turns the stream's sequenced traffic, as it arrives from
pub/sub (``offer``) and from the chunk log (``apply_log``), into the exact event
sequence one subscriber must see. Rules:

1. Delivery is in seq order, each seq at most once; anything below the frontier
   (``next_seq``) is a duplicate and is dropped.
2. Seqs belong to the whole stream (all turns share one counter). A seq carrying
   another generation fills its slot silently; once a *newer* generation shows up,
   this generation can publish nothing more, so the subscriber ends with
   :data:`SUPERSEDED`. Only the chunk log may say so: anyone who can publish on the
   channel can send a message of any generation, so a live message of another
   generation is a hint that makes the buffer read the log, and is then dropped
   (counted in ``foreign_hints``).
2b. A live message of this generation is a hint too, until the log confirms it: one
   that an exhausted log read, issued after it was heard, does not show is dropped
   (counted in ``foreign_hints``) without moving the frontier; a forged seq far
   ahead opens no gap and holds nothing back.
3. A gap is never skipped silently. When it does not fill within ``timeout`` of the
   first parked message (or ``capacity`` messages park) the core asks for the chunk
   log from the frontier (:attr:`Step.fetch_from`). Only a seq that the log proves
   missing becomes a :class:`streamcheck.model.Gap`; so does a ``LostWrites`` row, the log's record
   of seqs that Redis lost (reason ``WRITES_LOST``).
4. While ``deferred`` (a fresh attachment catching up from the log) live traffic
   parks and neither the timer nor the capacity limit fires.
5. The first terminal of this generation ends the subscription; nothing follows it.

Time comes in as ``now``; the core asks to be woken (``Step.wake_at``) and never
reads a clock. The shell performs ``fetch_from`` and feeds the rows to
``apply_log``; if the read fails it calls ``fetch_failed`` so the core retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from streamcheck.impl._log import LogRow, LostWrites, SequencedEvent
from streamcheck.model import Done, Failure, Gap, GapReason, StreamEvent, is_terminal

#: Message delivered when a newer turn took over the stream id before this
#: generation's terminal was seen (it can never arrive: the publish fence refuses it).
SUPERSEDED: Final = "generation superseded by a newer turn on this stream"


@dataclass(slots=True)
class Step:
    """What the shell must do after one input."""

    deliver: list[StreamEvent] = field(default_factory=list)
    #: Read the chunk log from this seq (inclusive), then call ``apply_log``.
    fetch_from: int | None = None
    #: Call ``on_timer`` at this time (``None``: no timer needed).
    wake_at: float | None = None
    #: The subscription delivered its terminal and must be detached.
    finished: bool = False
    #: An idle probe read the log and found nothing new: the shell should check
    #: whether the generation is still alive.
    idle_and_empty: bool = False


@dataclass(frozen=True, slots=True)
class ReorderStats:
    next_seq: int
    pending: int
    delivered: int
    duplicates_dropped: int
    foreign_skipped: int
    repairs: int
    gaps: int
    #: A parked message was released because the missing one arrived live after all.
    late_fills: int
    #: Events delivered from the log after the reorder timeout (not the catch-up).
    repaired_events: int
    #: Events an idle probe found in the log: pub/sub never brought them.
    probe_repaired_events: int
    #: Live messages checked against the log and dropped: another generation's, and
    #: this generation's that the log did not hold (rules 2 and 2b).
    foreign_hints: int
    deferred: bool
    finished: bool


class ReorderBuffer:
    def __init__(
        self,
        *,
        generation: str,
        start_seq: int,
        now: float,
        timeout: float,
        capacity: int,
        idle_probe: float,
    ) -> None:
        self.generation = generation
        self.next_seq = start_seq
        self._timeout = timeout
        self._capacity = capacity
        self._idle_probe = idle_probe
        self._pending: dict[int, SequencedEvent] = {}
        self._first_parked_at: float | None = None
        self._last_progress_at = now
        #: Live traffic parks until the catch-up is done.
        self._deferred = True
        self._fetch_in_flight = False
        #: Highest parked seq at the moment the in-flight fetch was issued: every
        #: seq below it was in the log before the read started.
        self._proven_upto: int | None = None
        self._idle_fetch = False
        self._finished = False
        self._delivered = 0
        self._duplicates = 0
        self._foreign = 0
        self._repairs = 0
        self._gaps = 0
        self._late_fills = 0
        self._repaired_events = 0
        self._probe_repaired_events = 0
        self._foreign_hints = 0
        self._repair_in_flight = False
        #: Highest seq this generation is known to have published (by a producer on
        #: this replica): if it never arrives, Redis lost it.
        self._known_high = -1

    # -- inputs ---------------------------------------------------------------

    def begin(self, now: float) -> Step:
        """First step of a fresh attachment: catch up from the log at the frontier."""
        step = Step()
        self._request_fetch(step)
        return self._finish(step, now)

    def preload(self, events: list[SequencedEvent], now: float) -> Step:
        """Replay events held locally (the early buffer) before reading the log."""
        step = Step()
        for event in events:
            if event.seq > self.next_seq:
                break  # not contiguous: the log read that follows settles the rest
            self._accept_in_order(event, step)
        return self._finish(step, now)

    def offer(self, event: SequencedEvent, now: float) -> Step:
        step = Step()
        if self._finished:
            return self._finish(step, now)
        if event.seq < self.next_seq or event.seq in self._pending:
            # Still a full step: a bare one would carry no timer, and the shell would
            # stop waking this reader (its idle probe would never run again).
            self._duplicates += 1
            return self._finish(step, now)
        if event.generation != self.generation:
            # Only the log may prove a newer turn (rule 2): read it, keep nothing.
            self._foreign_hints += 1
            if not self._deferred and not self._fetch_in_flight:
                self._request_fetch(step)
            return self._finish(step, now)
        self._pending[event.seq] = event
        if self._first_parked_at is None:
            self._first_parked_at = now
        if not self._deferred:
            waiting = len(self._pending)
            self._drain(step)
            if (
                waiting > 1  # (first: the in-order case, every event's, ends here)
                and len(self._pending) < waiting - 1
                and event.seq == step_first_seq(step)
            ):
                self._late_fills += 1
            if self._pending and len(self._pending) >= self._capacity and not self._fetch_in_flight:
                self._request_fetch(step)
        return self._finish(step, now)

    def apply_log(self, entries: list[LogRow], *, exhausted: bool, now: float) -> Step:
        """Rows read from the log starting at the requested seq, ascending.

        ``exhausted`` is true when the read returned fewer rows than asked for, i.e.
        the log holds nothing beyond the last row.
        """
        step = Step()
        self._fetch_in_flight = False
        proven_upto = self._proven_upto
        self._proven_upto = None
        was_idle_fetch = self._idle_fetch
        self._idle_fetch = False
        was_repair = self._repair_in_flight
        self._repair_in_flight = False
        if self._finished:
            return self._finish(step, now)
        before = self.next_seq
        for entry in entries:
            if self._finished:
                break
            if entry.seq < self.next_seq:
                continue
            if isinstance(entry, LostWrites):
                self._lost_writes(entry, step)
                continue
            if entry.seq > self.next_seq:
                self._emit_gap(self.next_seq, entry.seq - 1, step)
            self._pending.pop(entry.seq, None)
            self._accept_in_order(entry, step)
        if was_repair:
            self._repaired_events += sum(1 for e in step.deliver if not isinstance(e, Gap))
        elif was_idle_fetch:
            self._probe_repaired_events += sum(1 for e in step.deliver if not isinstance(e, Gap))
        if self._finished:
            return self._finish(step, now)
        self._drop_below_frontier()
        self._drain(step)
        if not exhausted:
            self._request_fetch(step)
            return self._finish(step, now)
        if self._pending and proven_upto is not None:
            self._drop_unconfirmed(proven_upto)
        if self._deferred:
            self._deferred = False
            self._drain(step)
        if self._pending and not self._finished:
            # Parked entries arrived after the read started: the log may have them now.
            if proven_upto is None or max(self._pending) > proven_upto:
                self._first_parked_at = now
        elif not self._pending:
            self._first_parked_at = None
        if was_idle_fetch and self.next_seq == before and not step.deliver:
            step.idle_and_empty = True
        return self._finish(step, now)

    def fetch_failed(self, now: float) -> Step:
        """The log read raised; retry after the timeout (the core never assumes success)."""
        self._fetch_in_flight = False
        self._proven_upto = None
        self._idle_fetch = False
        self._first_parked_at = now
        return self._finish(Step(), now, force_timer=True)

    def resync(self, now: float) -> Step:
        """The connection was restored: whatever pub/sub lost must come from the log."""
        step = Step()
        if not self._finished and not self._fetch_in_flight:
            self._request_fetch(step)
        return self._finish(step, now)

    def on_timer(self, now: float) -> Step:
        step = Step()
        if self._finished or self._fetch_in_flight:
            return self._finish(step, now)
        if self._deferred:
            self._request_fetch(step)
        elif self._pending and self._first_parked_at is not None:
            if now >= self._first_parked_at + self._timeout:
                self._gap_timed_out(step)
        elif now >= self._last_progress_at + self._idle_probe:
            # Count the probe as progress so an empty answer re-arms a full interval.
            self._last_progress_at = now
            self._idle_fetch = True
            self._request_fetch(step)
        return self._finish(step, now)

    def note_published(self, seq: int) -> None:
        """This generation published ``seq`` (the producer's receipt said so)."""
        self._known_high = max(self._known_high, seq)

    def end_with(self, terminal: Done | Failure, now: float) -> Step:
        """Deliver a terminal decided outside the seq stream (job found ended or lost)."""
        step = Step()
        if not self._finished:
            self._gap_for_known_lost(step)
            self._deliver(replace(terminal, seq=max(terminal.seq, self.next_seq)), step)
        return self._finish(step, now)

    def end_here(self, failure: Failure, now: float) -> Step:
        """End the reader with ``failure`` because this replica can no longer serve it,
        not because the generation ended: nothing is claimed about the seqs not yet
        delivered (no gap), since the client may resume them on another replica."""
        step = Step()
        if not self._finished:
            self._deliver(replace(failure, seq=max(failure.seq, self.next_seq)), step)
        return self._finish(step, now)

    def close(self) -> None:
        self._finished = True
        self._pending.clear()

    # -- inspection -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def deferred(self) -> bool:
        return self._deferred

    def statistics(self) -> ReorderStats:
        return ReorderStats(
            next_seq=self.next_seq,
            pending=len(self._pending),
            delivered=self._delivered,
            duplicates_dropped=self._duplicates,
            foreign_skipped=self._foreign,
            repairs=self._repairs,
            gaps=self._gaps,
            late_fills=self._late_fills,
            repaired_events=self._repaired_events,
            probe_repaired_events=self._probe_repaired_events,
            foreign_hints=self._foreign_hints,
            deferred=self._deferred,
            finished=self._finished,
        )

    def __repr__(self) -> str:
        return (
            f"<ReorderBuffer gen={self.generation} next_seq={self.next_seq} "
            f"pending={len(self._pending)} deferred={self._deferred} finished={self._finished}>"
        )

    # -- internals ----------------------------------------------------------------

    def _request_fetch(self, step: Step) -> None:
        self._fetch_in_flight = True
        self._proven_upto = max(self._pending) if self._pending else None
        step.fetch_from = self.next_seq

    def _gap_timed_out(self, step: Step) -> None:
        """A gap outlived the reorder timeout: read the log from the frontier. Pub/sub
        may have lost the missing seqs, the log has them unless Redis lost them too,
        and only what the log proves missing becomes a :class:`~streamcheck.model.Gap`
        (rule 3), so nothing is ever skipped silently."""
        self._repairs += 1
        self._repair_in_flight = True
        self._request_fetch(step)

    def _accept_in_order(self, event: SequencedEvent, step: Step) -> None:
        """``event.seq`` is at or above the frontier and everything before it is settled."""
        if self._finished or event.seq < self.next_seq:
            if not self._finished:
                self._duplicates += 1
            return
        if event.generation == self.generation:
            self.next_seq = event.seq + 1
            self._deliver(event, step)
        elif self._is_newer(event):
            self._gap_for_known_lost(step)
            seq = max(event.seq, self.next_seq)
            self.next_seq = seq + 1
            self._deliver(Failure(seq=seq, generation=self.generation, message=SUPERSEDED), step)
        else:
            self.next_seq = event.seq + 1
            self._foreign += 1

    def _gap_for_known_lost(self, step: Step) -> None:
        """The generation is ending without its own terminal: seqs it published that
        never arrived are not coming (a failover lost them, and perhaps a newer turn
        reused their numbers). Say so rather than end over a silent hole."""
        if self._known_high >= self.next_seq:
            self._emit_gap(self.next_seq, self._known_high, step, GapReason.WRITES_LOST)

    def _is_newer(self, event: SequencedEvent) -> bool:
        # A different generation at a seq we had not passed yet can only be a later
        # turn: earlier turns' publishes are fenced once this one was created.
        return event.generation != self.generation

    def _deliver(self, event: StreamEvent, step: Step) -> None:
        step.deliver.append(event)
        self._delivered += 1
        if is_terminal(event):
            self._finished = True
            self._pending.clear()
            step.finished = True

    def _drain(self, step: Step) -> None:
        if self._deferred:
            return
        while not self._finished and self.next_seq in self._pending:
            self._accept_in_order(self._pending.pop(self.next_seq), step)
        if not self._pending:
            self._first_parked_at = None

    def _drop_below_frontier(self) -> None:
        for seq in [s for s in self._pending if s < self.next_seq]:
            del self._pending[seq]
            self._duplicates += 1

    def _drop_unconfirmed(self, proven_upto: int) -> None:
        """Drop parked live messages an exhausted log read has disproved (rule 2b).

        Every parked seq up to ``proven_upto`` was heard before the read started, and
        the publish script logs an event before it publishes it, so the log would hold
        each of them. It does not: the message was never published by the script (a
        forged seq the counter never handed out), or Redis lost it, which a
        ``LostWrites`` row will say. Either way the channel alone is no proof: it may
        neither become content nor open a gap. Dropping never moves the frontier, so
        a seq the log shows later is still delivered from there."""
        for seq in [s for s in self._pending if s <= proven_upto]:
            del self._pending[seq]
            self._foreign_hints += 1
        if not self._pending:
            self._first_parked_at = None

    def _lost_writes(self, row: LostWrites, step: Step) -> None:
        """Seqs up to ``row.last_seq`` will never be in the log. Those heard live
        before Redis lost them are still delivered if a replica saw them (the row's
        witnessed part, ``first_seq`` up to ``possibly_from``); the rest become gaps.
        A live message elsewhere in the range was heard on the channel only, which
        anyone may publish on: the server's skip after a failover spans millions of
        seqs nobody handed out, so it is dropped like any unconfirmed hint (rule 2b)."""
        witnessed_to = row.last_seq if row.possibly_from is None else row.possibly_from - 1
        for seq in sorted(s for s in self._pending if s <= row.last_seq):
            event = self._pending.pop(seq)
            if not row.first_seq <= seq <= witnessed_to:
                self._foreign_hints += 1
                continue
            if seq > self.next_seq:
                self._gap_before(seq, row, step)
            self._accept_in_order(event, step)
            if self._finished:
                return
        if self.next_seq <= row.last_seq:
            self._gap_before(row.last_seq + 1, row, step)

    def _gap_before(self, seq: int, row: LostWrites, step: Step) -> None:
        """A gap from the frontier up to ``seq - 1``, split where ``row``'s lost range
        starts (below it the log simply lacks the seqs, from it on Redis lost them) and
        where its witnessed part ends (above it they may never have existed)."""
        possibly = row.possibly_from if row.possibly_from is not None else seq
        for end, reason in (
            (row.first_seq, GapReason.NOT_IN_LOG),
            (possibly, GapReason.WRITES_LOST),
            (seq, GapReason.POSSIBLY_LOST),
        ):
            if self.next_seq < min(end, seq):
                self._emit_gap(self.next_seq, min(end, seq) - 1, step, reason)

    def _emit_gap(
        self, first: int, last: int, step: Step, reason: GapReason = GapReason.NOT_IN_LOG
    ) -> None:
        self._gaps += 1
        step.deliver.append(
            Gap(first_seq=first, last_seq=last, generation=self.generation, reason=reason)
        )
        self.next_seq = last + 1

    def _finish(self, step: Step, now: float, *, force_timer: bool = False) -> Step:
        if step.deliver:
            self._last_progress_at = now
        if self._finished:
            step.finished = True
            step.wake_at = None
            return step
        if step.fetch_from is not None or self._fetch_in_flight:
            step.wake_at = None
            return step
        if (self._pending and not self._deferred) or force_timer:
            base = self._first_parked_at if self._first_parked_at is not None else now
            step.wake_at = base + self._timeout
        else:
            step.wake_at = self._last_progress_at + self._idle_probe
        return step


def step_first_seq(step: Step) -> int | None:
    """Seq of the first sequenced event a step delivers (None if it delivers none)."""
    for event in step.deliver:
        if not isinstance(event, Gap):
            return event.seq
    return None
