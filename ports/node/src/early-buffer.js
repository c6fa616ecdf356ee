// The producer's early buffer (sans-IO), as impl/_early_buffer.py.
//
// While the generating replica has never had a local subscriber it keeps what it
// published, so the first local attachment replays it without a log read. It is bounded
// (spec §5 #13: an unbounded buffer grew a 2 GiB heap); on overflow it discards itself and
// that attachment catches up from the chunk log instead. After the first attachment it
// closes for good: later attachments always use the log, so nothing is replayed twice.

/** @typedef {import("./events.js").SequencedEvent} SequencedEvent */

/** Caps from LibreChat #14612 (spec §7). */
export const MAX_EVENTS = 5_000;
export const MAX_BYTES = 8 * 1024 * 1024;

export class EarlyBuffer {
  constructor(maxEvents = MAX_EVENTS, maxBytes = MAX_BYTES) {
    this.maxEvents = maxEvents;
    this.maxBytes = maxBytes;
    /** @type {SequencedEvent[]} */
    this.events = [];
    this.sizeBytes = 0;
    this.overflowed = false;
    this.closed = false;
  }

  /** @param {SequencedEvent} event @param {number} sizeBytes */
  record(event, sizeBytes) {
    if (this.closed || this.overflowed) return;
    if (this.events.length + 1 > this.maxEvents || this.sizeBytes + sizeBytes > this.maxBytes) {
      this.overflowed = true;
      this.events = [];
      this.sizeBytes = 0;
      return;
    }
    this.events.push(event);
    this.sizeBytes += sizeBytes;
  }

  /** Hand the buffer to the first attachment and close; empty if it overflowed.
   * @returns {SequencedEvent[]} */
  take() {
    const events = this.overflowed ? [] : this.events;
    this.events = [];
    this.sizeBytes = 0;
    this.closed = true;
    return events;
  }
}
