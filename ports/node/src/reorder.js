// Per-subscriber ordering, de-duplication and gap repair (sans-IO), as impl/_reorder.py.
//
// A ReorderBuffer turns the stream's sequenced traffic, as it arrives from pub/sub
// (`offer`) and from the chunk log (`applyLog`), into the exact event sequence one
// subscriber must see. Rules:
//
// 1. Delivery is in seq order, each seq at most once; anything below the frontier
//    (`nextSeq`) is a duplicate and is dropped.
// 2. Seqs belong to the whole stream (all turns share one counter). A seq carrying another
//    generation fills its slot silently; once a newer generation shows up, this generation
//    can publish nothing more, so the subscriber ends with SUPERSEDED.
// 3. A gap is never skipped silently. When it does not fill within `timeout` of the first
//    parked message (or `capacity` messages park) the core asks for the chunk log from the
//    frontier (`step.fetchFrom`). Only a seq the log proves missing becomes a Gap; so does
//    a LostWrites row, the log's record of seqs Redis lost (reason "writes_lost").
// 4. While deferred (a fresh attachment catching up from the log) live traffic parks and
//    neither the timer nor the capacity limit fires.
// 5. The first terminal of this generation ends the subscription; nothing follows it.
//
// Time comes in as `now` (seconds); the core asks to be woken (`step.wakeAt`) and never
// reads a clock. The shell performs `fetchFrom` and feeds the rows to `applyLog`; if the
// read fails it calls `fetchFailed` so the core retries.

import { failure, gap, isTerminal } from "./events.js";

/** @typedef {import("./events.js").SequencedEvent} SequencedEvent */
/** @typedef {import("./events.js").StreamEvent} StreamEvent */
/** @typedef {import("./events.js").LogRow} LogRow */
/** @typedef {import("./events.js").LostWrites} LostWrites */
/** @typedef {import("./events.js").GapReason} GapReason */
/** @typedef {import("./events.js").Terminal} Terminal */

/** Delivered when a newer turn took over the stream id before this generation's terminal
 * was seen (it can never arrive: the publish fence refuses it). */
export const SUPERSEDED = "generation superseded by a newer turn on this stream";

/** What the shell must do after one input. */
export class Step {
  constructor() {
    /** @type {StreamEvent[]} */
    this.deliver = [];
    /** Read the chunk log from this seq (inclusive), then call `applyLog`.
     * @type {number | null} */
    this.fetchFrom = null;
    /** Call `onTimer` at this time (null: no timer needed). @type {number | null} */
    this.wakeAt = null;
    /** The subscription delivered its terminal and must be detached. */
    this.finished = false;
    /** An idle probe read the log and found nothing new: the shell should check whether
     * the generation is still alive. */
    this.idleAndEmpty = false;
  }
}

/**
 * @typedef {object} ReorderOptions
 * @property {string} generation
 * @property {number} startSeq
 * @property {number} now
 * @property {number} timeout seconds a gap may stay open before the log is read
 * @property {number} capacity parked messages that trigger a log read at once
 * @property {number} idleProbe seconds of silence before the log is read anyway
 */

export class ReorderBuffer {
  /** @param {ReorderOptions} options */
  constructor({ generation, startSeq, now, timeout, capacity, idleProbe }) {
    this.generation = generation;
    this.nextSeq = startSeq;
    this._timeout = timeout;
    this._capacity = capacity;
    this._idleProbe = idleProbe;
    /** @type {Map<number, SequencedEvent>} */
    this._pending = new Map();
    /** @type {number | null} */
    this._firstParkedAt = null;
    this._lastProgressAt = now;
    /** Live traffic parks until the catch-up from the log is done. */
    this._deferred = true;
    this._fetchInFlight = false;
    /** Highest parked seq when the in-flight fetch was issued: every seq below it was in
     * the log before the read started. @type {number | null} */
    this._provenUpto = null;
    this._idleFetch = false;
    this._repairInFlight = false;
    this._finished = false;
    /** Highest seq this generation is known to have published (by a producer on this
     * replica): if it never arrives, Redis lost it. */
    this._knownHigh = -1;
    this.stats = { delivered: 0, duplicates: 0, foreign: 0, repairs: 0, gaps: 0, lateFills: 0, repairedEvents: 0 };
  }

  // -- inputs ----------------------------------------------------------------------

  /** First step of a fresh attachment: catch up from the log at the frontier.
   * @param {number} now */
  begin(now) {
    const step = new Step();
    this._requestFetch(step);
    return this._finish(step, now);
  }

  /** Replay events held locally (the producer's early buffer) before reading the log.
   * @param {readonly SequencedEvent[]} events @param {number} now */
  preload(events, now) {
    const step = new Step();
    for (const event of events) {
      if (event.seq > this.nextSeq) break; // not contiguous: the log read settles the rest
      this._acceptInOrder(event, step);
    }
    return this._finish(step, now);
  }

  /** @param {SequencedEvent} event @param {number} now */
  offer(event, now) {
    const step = new Step();
    if (this._finished) return this._finish(step, now);
    if (event.seq < this.nextSeq || this._pending.has(event.seq)) {
      // Still a full step: a bare one would carry no timer, and the shell would stop
      // waking this reader.
      this.stats.duplicates += 1;
      return this._finish(step, now);
    }
    this._pending.set(event.seq, event);
    if (this._firstParkedAt === null) this._firstParkedAt = now;
    if (!this._deferred) {
      const waiting = this._pending.size;
      this._drain(step);
      const first = firstSeq(step);
      if (event.seq === first && waiting > 1 && this._pending.size < waiting - 1) {
        this.stats.lateFills += 1;
      }
      if (this._pending.size > 0 && this._pending.size >= this._capacity && !this._fetchInFlight) {
        this._requestFetch(step);
      }
    }
    return this._finish(step, now);
  }

  /** Rows read from the log starting at the requested seq, ascending. `exhausted`: the read
   * returned fewer rows than asked for, so the log holds nothing beyond the last row.
   * @param {readonly LogRow[]} rows @param {boolean} exhausted @param {number} now */
  applyLog(rows, exhausted, now) {
    const step = new Step();
    this._fetchInFlight = false;
    const provenUpto = this._provenUpto;
    this._provenUpto = null;
    const wasIdleFetch = this._idleFetch;
    this._idleFetch = false;
    const wasRepair = this._repairInFlight;
    this._repairInFlight = false;
    if (this._finished) return this._finish(step, now);
    const before = this.nextSeq;
    for (const row of rows) {
      if (this._finished) break;
      if (row.seq < this.nextSeq) continue;
      if (row.kind === "lost") {
        this._lostWrites(row, step);
        continue;
      }
      if (row.seq > this.nextSeq) this._emitGap(this.nextSeq, row.seq - 1, step);
      this._pending.delete(row.seq);
      this._acceptInOrder(row, step);
    }
    if (wasRepair) this.stats.repairedEvents += step.deliver.filter((e) => e.kind !== "gap").length;
    if (this._finished) return this._finish(step, now);
    this._dropBelowFrontier();
    this._drain(step);
    if (!exhausted) {
      this._requestFetch(step);
      return this._finish(step, now);
    }
    if (this._pending.size > 0 && provenUpto !== null) {
      const lowest = Math.min(...this._pending.keys());
      if (this.nextSeq < lowest && lowest <= provenUpto) {
        // The log was read after `lowest` had been published, so the seqs in between
        // would be in the log unless they are lost for good.
        this._emitGap(this.nextSeq, lowest - 1, step);
        this._drain(step);
      }
    }
    if (this._deferred) {
      this._deferred = false;
      this._drain(step);
    }
    if (this._pending.size > 0 && !this._finished) {
      // Parked entries arrived after the read started: the log may have them now.
      if (provenUpto === null || Math.max(...this._pending.keys()) > provenUpto) this._firstParkedAt = now;
    } else if (this._pending.size === 0) {
      this._firstParkedAt = null;
    }
    if (wasIdleFetch && this.nextSeq === before && step.deliver.length === 0) step.idleAndEmpty = true;
    return this._finish(step, now);
  }

  /** The log read failed; retry after the timeout (the core never assumes success).
   * @param {number} now */
  fetchFailed(now) {
    this._fetchInFlight = false;
    this._provenUpto = null;
    this._idleFetch = false;
    this._firstParkedAt = now;
    return this._finish(new Step(), now, true);
  }

  /** The connection was restored: whatever pub/sub lost must come from the log.
   * @param {number} now */
  resync(now) {
    const step = new Step();
    if (!this._finished && !this._fetchInFlight) this._requestFetch(step);
    return this._finish(step, now);
  }

  /** @param {number} now */
  onTimer(now) {
    const step = new Step();
    if (this._finished || this._fetchInFlight) return this._finish(step, now);
    if (this._deferred) {
      this._requestFetch(step);
    } else if (this._pending.size > 0 && this._firstParkedAt !== null) {
      if (now >= this._firstParkedAt + this._timeout) this.gapTimedOut(step);
    } else if (now >= this._lastProgressAt + this._idleProbe) {
      // Count the probe as progress so an empty answer re-arms a full interval.
      this._lastProgressAt = now;
      this._idleFetch = true;
      this._requestFetch(step);
    }
    return this._finish(step, now);
  }

  /** A gap stayed open for `timeout`: read the log from the frontier, which either fills
   * it or proves it lost. (LibreChat skipped to the parked messages here instead, a silent
   * truncation: spec §5 #2, #8.)
   * @param {Step} step */
  gapTimedOut(step) {
    this.stats.repairs += 1;
    this._repairInFlight = true;
    this._requestFetch(step);
  }

  /** This generation published `seq` (the producer's receipt on this replica said so).
   * @param {number} seq */
  notePublished(seq) {
    this._knownHigh = Math.max(this._knownHigh, seq);
  }

  /** Deliver a terminal decided outside the seq stream (the job found ended or lost).
   * @param {Terminal} terminal @param {number} now */
  endWith(terminal, now) {
    const step = new Step();
    if (!this._finished) {
      this._gapForKnownLost(step);
      this._deliver(Object.freeze({ ...terminal, seq: Math.max(terminal.seq, this.nextSeq) }), step);
    }
    return this._finish(step, now);
  }

  close() {
    this._finished = true;
    this._pending.clear();
  }

  get finished() {
    return this._finished;
  }

  get deferred() {
    return this._deferred;
  }

  get pendingCount() {
    return this._pending.size;
  }

  // -- internals -------------------------------------------------------------------

  /** @param {Step} step */
  _requestFetch(step) {
    this._fetchInFlight = true;
    this._provenUpto = this._pending.size > 0 ? Math.max(...this._pending.keys()) : null;
    step.fetchFrom = this.nextSeq;
  }

  /** `event.seq` is at or above the frontier and everything before it is settled.
   * @param {SequencedEvent} event @param {Step} step */
  _acceptInOrder(event, step) {
    if (this._finished || event.seq < this.nextSeq) {
      if (!this._finished) this.stats.duplicates += 1;
      return;
    }
    if (event.generation === this.generation) {
      this.nextSeq = event.seq + 1;
      this._deliver(event, step);
    } else {
      // A different generation at a seq we had not passed yet can only be a later turn:
      // earlier turns' publishes are fenced once this one was created.
      this._gapForKnownLost(step);
      const seq = Math.max(event.seq, this.nextSeq);
      this.nextSeq = seq + 1;
      this._deliver(failure(seq, this.generation, SUPERSEDED), step);
    }
  }

  /** The generation is ending without its own terminal: seqs it published that never
   * arrived are not coming (a failover lost them). Say so rather than end over a hole.
   * @param {Step} step */
  _gapForKnownLost(step) {
    if (this._knownHigh >= this.nextSeq) this._emitGap(this.nextSeq, this._knownHigh, step, "writes_lost");
  }

  /** @param {StreamEvent} event @param {Step} step */
  _deliver(event, step) {
    step.deliver.push(event);
    this.stats.delivered += 1;
    if (isTerminal(event)) {
      this._finished = true;
      this._pending.clear();
      step.finished = true;
    }
  }

  /** @param {Step} step */
  _drain(step) {
    if (this._deferred) return;
    for (;;) {
      if (this._finished) break;
      const next = this._pending.get(this.nextSeq);
      if (next === undefined) break;
      this._pending.delete(this.nextSeq);
      this._acceptInOrder(next, step);
    }
    if (this._pending.size === 0) this._firstParkedAt = null;
  }

  _dropBelowFrontier() {
    for (const seq of [...this._pending.keys()]) {
      if (seq < this.nextSeq) {
        this._pending.delete(seq);
        this.stats.duplicates += 1;
      }
    }
  }

  /** Seqs up to `row.seq` will never be in the log. Those heard live before Redis lost
   * them are still delivered; the rest become gaps.
   * @param {LostWrites} row @param {Step} step */
  _lostWrites(row, step) {
    const heard = [...this._pending.keys()].filter((s) => s <= row.seq).sort((a, b) => a - b);
    for (const seq of heard) {
      const event = /** @type {SequencedEvent} */ (this._pending.get(seq));
      this._pending.delete(seq);
      if (seq > this.nextSeq) this._gapBefore(seq, row, step);
      this._acceptInOrder(event, step);
      if (this._finished) return;
    }
    if (this.nextSeq <= row.seq) this._gapBefore(row.seq + 1, row, step);
  }

  /** A gap from the frontier up to `seq - 1`, split where the row's lost range starts
   * (below it the log simply lacks the seqs, from it on Redis lost them) and where its
   * witnessed part ends (above it they may never have existed).
   * @param {number} seq @param {LostWrites} row @param {Step} step */
  _gapBefore(seq, row, step) {
    const possibly = row.possiblyFrom !== null ? row.possiblyFrom : seq;
    /** @type {[number, GapReason][]} */
    const parts = [
      [row.firstSeq, "not_in_log"],
      [possibly, "writes_lost"],
      [seq, "possibly_lost"],
    ];
    for (const [end, reason] of parts) {
      const upto = Math.min(end, seq);
      if (this.nextSeq < upto) this._emitGap(this.nextSeq, upto - 1, step, reason);
    }
  }

  /** @param {number} first @param {number} last @param {Step} step @param {GapReason} [reason] */
  _emitGap(first, last, step, reason = "not_in_log") {
    this.stats.gaps += 1;
    step.deliver.push(gap(first, last, this.generation, reason));
    this.nextSeq = last + 1;
  }

  /** @param {Step} step @param {number} now @param {boolean} [forceTimer] */
  _finish(step, now, forceTimer = false) {
    if (step.deliver.length > 0) this._lastProgressAt = now;
    if (this._finished) {
      step.finished = true;
      step.wakeAt = null;
      return step;
    }
    if (step.fetchFrom !== null || this._fetchInFlight) {
      step.wakeAt = null;
      return step;
    }
    if ((this._pending.size > 0 && !this._deferred) || forceTimer) {
      const base = this._firstParkedAt !== null ? this._firstParkedAt : now;
      step.wakeAt = base + this._timeout;
    } else {
      step.wakeAt = this._lastProgressAt + this._idleProbe;
    }
    return step;
  }
}

/** Seq of the first sequenced event a step delivers (null if it delivers none).
 * @param {Step} step */
function firstSeq(step) {
  for (const event of step.deliver) if (event.kind !== "gap") return event.seq;
  return null;
}
