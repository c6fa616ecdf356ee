// LibreChat's historical behaviours, put back into the port from outside: each function
// replaces one method of a production class, so src/ carries no switch for them. Only the
// entry scripts in test/agents/ call these, to show that the harness finds them.

import { ReorderBuffer } from "../src/reorder.js";
import { EventTransport } from "../src/transport.js";

/** @typedef {import("../src/reorder.js").Step} Step */
/** @typedef {import("../src/events.js").SequencedEvent} SequencedEvent */

/** The 500 ms force-flush (spec §5 #2, #8): a gap still open after the reorder timeout is
 * skipped, and the parked events are delivered over the hole, instead of being repaired
 * from the chunk log or reported as a Gap. */
export function forceFlushSkipsGap() {
  ReorderBuffer.prototype.gapTimedOut = function (/** @type {Step} */ step) {
    const parked = [...this._pending.keys()].sort((a, b) => a - b);
    for (const seq of parked) {
      if (this.finished) break;
      const event = /** @type {SequencedEvent} */ (this._pending.get(seq));
      this._pending.delete(seq);
      this.nextSeq = seq;
      this._acceptInOrder(event, step);
    }
    this._pending.clear();
    this._firstParkedAt = null;
  };
}

/** Subscribing without waiting for the acknowledgement (LibreChat before #11710, spec §5
 * #2): SUBSCRIBE is sent and the reader attaches at once. Whatever is published after its
 * catch-up read the log and before the subscription took effect is heard by nobody; the
 * reorder buffer's log repair would still fill that hole, so this goes with the
 * force-flush, as it did in LibreChat. */
export function subscribeBeforeAck() {
  EventTransport.prototype._holdChannel = function (/** @type {string} */ streamId) {
    this._bus.acquireChannel(streamId).catch((/** @type {Error} */ error) => console.error(`stream ${streamId}: subscribe failed: ${error.message}`));
    return Promise.resolve();
  };
  forceFlushSkipsGap();
}
