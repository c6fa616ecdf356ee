// The pub/sub envelope, as impl/transport/_envelope.py: LibreChat's
// `{type, seq, data | error}` plus `generationId`, and the unsequenced abort signal.
//
// Both ports write byte-identical envelopes: compact JSON with every non-ASCII character
// escaped (Python's json default), so an encoded body's length is its size in bytes.
// A coalesced publish sends a JSON array of envelopes in one message (a batch of one
// generation, in seq order); a single event is always a plain envelope.
// Decoding is strict: anything that is not a well-formed envelope raises MalformedPayload,
// which the receiver counts and drops without disturbing the stream.

import { chunk, done, failure } from "./events.js";

/** @typedef {import("./events.js").JSONValue} JSONValue */
/** @typedef {import("./events.js").SequencedEvent} SequencedEvent */
/** @typedef {import("./events.js").EventKind} EventKind */
/** A cross-replica request to stop generation `generation`.
 * @typedef {{ readonly kind: "abort", readonly generation: string }} AbortSignal */
/** @typedef {SequencedEvent | AbortSignal} Incoming */

export class MalformedPayload extends Error {
  /** @param {string} reason */
  constructor(reason) {
    super(reason);
    this.name = "MalformedPayload";
    this.reason = reason;
  }
}

/** @param {string} ch */
const escapeChar = (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** JSON as Python's `json.dumps(value, separators=(",", ":"))` writes it for the values
 * JSON.stringify and Python agree on (everything but floats with an integral value):
 * compact and printable ASCII. Python escapes every character outside space..tilde that
 * JSON.stringify leaves as it is (DEL and everything past ASCII), one UTF-16 unit at a
 * time.
 * @param {unknown} value
 * @returns {string} */
export function asciiJson(value) {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`not JSON-serialisable: ${String(value)}`);
  return text.replace(/[\u007f-\uffff]/g, escapeChar);
}

/** The event's body as the envelope and the chunk log carry it.
 * @param {unknown} body */
export const encodeBody = (body) => asciiJson(body);

/** The envelope as [prefix, suffix] around the seq, which only Redis knows: the publish
 * script concatenates `prefix .. seq .. suffix` instead of re-encoding with cjson (which
 * would turn `[]` into `{}` and alter floats).
 * @param {EventKind} kind
 * @param {string} generation
 * @param {string} encodedBody the body as encodeBody wrote it
 * @returns {[string, string]} */
export function encodeSplit(kind, generation, encodedBody) {
  const key = kind === "error" ? "error" : "data";
  return [
    `{"type":${asciiJson(kind)},"seq":`,
    `,"generationId":${asciiJson(generation)},"${key}":${encodedBody}}`,
  ];
}

/** @param {string} generation */
export const encodeAbort = (generation) => asciiJson({ type: "abort", generationId: generation });

/** The most events one batch message may carry (a publish batch is far smaller). */
export const MAX_BATCH_EVENTS = 10_000;

/** One envelope, or a coalesced publish's batch: a JSON array of envelopes of one
 * generation in seq order (impl's PUBLISH_BATCH script), parsed once.
 * @param {string} payload
 * @returns {Incoming | SequencedEvent[]} */
export function decode(payload) {
  let raw;
  try {
    raw = JSON.parse(payload);
  } catch {
    throw new MalformedPayload("not JSON");
  }
  return Array.isArray(raw) ? decodeBatch(raw) : decodeObject(raw);
}

/** @param {any[]} raw
 * @returns {SequencedEvent[]} */
function decodeBatch(raw) {
  if (raw.length === 0 || raw.length > MAX_BATCH_EVENTS) {
    throw new MalformedPayload(`a batch of ${raw.length} envelopes`);
  }
  /** @type {SequencedEvent[]} */
  const events = [];
  for (const item of raw) {
    const event = decodeObject(item);
    if (event.kind === "abort") throw new MalformedPayload("an abort signal inside a batch");
    const first = events[0];
    const last = events[events.length - 1];
    if (first !== undefined && last !== undefined && (event.generation !== first.generation || event.seq <= last.seq)) {
      throw new MalformedPayload("a batch mixing generations or out of seq order");
    }
    events.push(event);
  }
  return events;
}

/** @param {any} raw a value JSON.parse returned
 * @returns {Incoming} */
function decodeObject(raw) {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new MalformedPayload("not a JSON object");
  }
  const { type, generationId: generation, seq } = raw;
  if (typeof generation !== "string" || !generation) throw new MalformedPayload("missing generationId");
  if (type === "abort") return Object.freeze({ kind: "abort", generation });
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new MalformedPayload(`seq is not a non-negative integer: ${JSON.stringify(seq)}`);
  }
  const data = raw.data === undefined ? null : raw.data;
  if (type === "chunk") return chunk(seq, generation, data);
  if (type === "done") return done(seq, generation, data);
  if (type === "error") {
    return failure(seq, generation, typeof raw.error === "string" ? raw.error : "Unknown error");
  }
  throw new MalformedPayload(`unknown type ${JSON.stringify(type)}`);
}
