// The vocabulary every module shares: what a stream carries and what its log holds
// (streamcheck.model's Chunk, Done, Failure and Gap; impl/_log.py's LostWrites).
// Events are plain frozen objects told apart by `kind`.

/** @typedef {import("./json.js").JSONValue} JSONValue */

/** @typedef {{ readonly kind: "chunk", readonly seq: number, readonly generation: string, readonly data: JSONValue }} Chunk */
/** @typedef {{ readonly kind: "done", readonly seq: number, readonly generation: string, readonly data: JSONValue }} Done */
/** @typedef {{ readonly kind: "error", readonly seq: number, readonly generation: string, readonly message: string }} Failure */
/** @typedef {"not_in_log" | "writes_lost" | "possibly_lost" | "producer_lost"} GapReason */
/** Events `firstSeq..lastSeq` (inclusive) are lost for good: an explicit hole.
 * @typedef {{ readonly kind: "gap", readonly firstSeq: number, readonly lastSeq: number, readonly generation: string, readonly reason: GapReason }} Gap */

/** @typedef {Chunk | Done | Failure} SequencedEvent */
/** @typedef {Done | Failure} Terminal */
/** What a subscriber receives. @typedef {SequencedEvent | Gap} StreamEvent */

/** A chunk-log row saying seqs `firstSeq..seq` were allocated and then lost by Redis
 * (restart or failover); from `possiblyFrom` on they were skipped only because the server
 * changed and may never have existed (null: every one was seen).
 * @typedef {{ readonly kind: "lost", readonly seq: number, readonly firstSeq: number, readonly possiblyFrom: number | null }} LostWrites */

/** @typedef {SequencedEvent | LostWrites} LogRow */

/** @typedef {"chunk" | "done" | "error"} EventKind */

/** @param {number} seq @param {string} generation @param {JSONValue} data @returns {Chunk} */
export const chunk = (seq, generation, data) => Object.freeze({ kind: "chunk", seq, generation, data });

/** @param {number} seq @param {string} generation @param {JSONValue} data @returns {Done} */
export const done = (seq, generation, data) => Object.freeze({ kind: "done", seq, generation, data });

/** @param {number} seq @param {string} generation @param {string} message @returns {Failure} */
export const failure = (seq, generation, message) =>
  Object.freeze({ kind: "error", seq, generation, message });

/** @param {number} firstSeq @param {number} lastSeq @param {string} generation @param {GapReason} reason @returns {Gap} */
export const gap = (firstSeq, lastSeq, generation, reason) =>
  Object.freeze({ kind: "gap", firstSeq, lastSeq, generation, reason });

/** @param {number} firstSeq @param {number} lastSeq @param {number | null} [possiblyFrom] @returns {LostWrites} */
export const lostWrites = (firstSeq, lastSeq, possiblyFrom = null) =>
  Object.freeze({ kind: "lost", seq: lastSeq, firstSeq, possiblyFrom });

/** @param {StreamEvent} event @returns {event is Terminal} */
export const isTerminal = (event) => event.kind === "done" || event.kind === "error";
