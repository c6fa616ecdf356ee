// The envelope and the chunk-log rows: byte-identical to what impl/ writes, strict on read.

import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeLogRow } from "../src/bus.js";
import { MalformedPayload, decode, encodeAbort, encodeBody, encodeSplit } from "../src/envelope.js";
import { chunk, done, failure, lostWrites } from "../src/events.js";
import { Keys } from "../src/keys.js";

const body = {
  id: "s0.t1#4",
  event: "on_message_delta",
  data: { index: 0, delta: { content: [{ type: "text", text: "café 😀 \u007f" }] } },
  empty: [],
  none: null,
};

test("an envelope is written exactly as impl/transport/_envelope.py writes it", () => {
  // Python: encode_split("chunk", "g-1", body) and encode_split("error", "gé", 'boom "x"').
  assert.deepEqual(encodeSplit("chunk", "g-1", encodeBody(body)), [
    '{"type":"chunk","seq":',
    ',"generationId":"g-1","data":{"id":"s0.t1#4","event":"on_message_delta","data":{"index":0,"delta":{"content":[{"type":"text","text":"caf\\u00e9 \\ud83d\\ude00 \\u007f"}]}},"empty":[],"none":null}}',
  ]);
  assert.deepEqual(encodeSplit("error", "gé", encodeBody('boom "x"')), ['{"type":"error","seq":', ',"generationId":"g\\u00e9","error":"boom \\"x\\""}']);
  assert.equal(encodeAbort("g-1"), '{"type":"abort","generationId":"g-1"}');
});

test("an encoded body is ASCII, so its length is its size in bytes", () => {
  const encoded = encodeBody(body);
  assert.equal(Buffer.byteLength(encoded, "utf8"), encoded.length);
});

test("what the publish script sends decodes back to the event", () => {
  const [prefix, suffix] = encodeSplit("chunk", "g-1", encodeBody(body));
  assert.deepEqual(decode(`${prefix}7${suffix}`), chunk(7, "g-1", body));
  const [p, s] = encodeSplit("done", "g-1", encodeBody({ final: true }));
  assert.deepEqual(decode(`${p}8${s}`), done(8, "g-1", { final: true }));
  const [ep, es] = encodeSplit("error", "g-1", encodeBody("boom"));
  assert.deepEqual(decode(`${ep}9${es}`), failure(9, "g-1", "boom"));
  assert.deepEqual(decode(encodeAbort("g-1")), { kind: "abort", generation: "g-1" });
});

test("a coalesced publish's batch decodes to its events, in order", () => {
  const [prefix, suffix] = encodeSplit("chunk", "g-1", encodeBody({ n: 1 }));
  const [p, s] = encodeSplit("done", "g-1", encodeBody({ final: true }));
  assert.deepEqual(decode(`[${prefix}7${suffix},${prefix}8${suffix},${p}9${s}]`), [
    chunk(7, "g-1", { n: 1 }),
    chunk(8, "g-1", { n: 1 }),
    done(9, "g-1", { final: true }),
  ]);
  const one = (/** @type {number} */ seq, gen = "g") => `{"type":"chunk","seq":${seq},"generationId":"${gen}","data":1}`;
  for (const [payload, reason] of [
    ["[]", "a batch of 0 envelopes"],
    [`[${one(5)},${one(4)}]`, "a batch mixing generations or out of seq order"],
    [`[${one(4)},${one(5, "h")}]`, "a batch mixing generations or out of seq order"],
    ['[{"type":"abort","generationId":"g"}]', "an abort signal inside a batch"],
    [`[[${one(4)}]]`, "not a JSON object"],
  ]) {
    assert.throws(() => decode(payload), (error) => error instanceof MalformedPayload && error.reason === reason);
  }
});

test("a malformed envelope raises MalformedPayload naming why", () => {
  for (const [payload, reason] of [
    ["{", "not JSON"],
    ["[1]", "not a JSON object"],
    ['{"type":"chunk","seq":1}', "missing generationId"],
    ['{"type":"chunk","seq":-1,"generationId":"g"}', "seq is not a non-negative integer: -1"],
    ['{"type":"chunk","seq":"1","generationId":"g"}', 'seq is not a non-negative integer: "1"'],
    ['{"type":"nope","seq":1,"generationId":"g"}', 'unknown type "nope"'],
  ]) {
    assert.throws(() => decode(payload), (error) => error instanceof MalformedPayload && error.reason === reason);
  }
});

test("chunk-log rows decode as impl/redis/_chunklog.py wrote them; unreadable ones are null", () => {
  assert.deepEqual(decodeLogRow({ seq: "3", type: "chunk", gen: "g", event: '{"a":1}' }), chunk(3, "g", { a: 1 }));
  assert.deepEqual(decodeLogRow({ seq: "4", type: "error", gen: "g", error: "boom" }), failure(4, "g", "boom"));
  assert.deepEqual(decodeLogRow({ seq: "9", type: "lost", first: "2", possibly: "4" }), lostWrites(2, 9, 4));
  assert.equal(decodeLogRow({ seq: "9", type: "lost", first: "10" }), null);
  assert.equal(decodeLogRow({ seq: "x", type: "chunk", gen: "g", event: "1" }), null);
  assert.equal(decodeLogRow({ seq: "3", type: "chunk", gen: "g", event: "{" }), null);
});

test("keys carry the stream id as the Cluster hash tag; channels take no prefix", () => {
  const keys = new Keys("app:");
  assert.equal(keys.seq("s0"), "app:stream:{s0}:seq");
  assert.equal(keys.chunks("s0"), "app:stream:{s0}:chunks");
  assert.equal(Keys.channel("s0"), "stream:{s0}:events");
  assert.equal(Keys.streamIdOfChannel("stream:{s0}:events"), "s0");
  assert.equal(Keys.streamIdOfChannel("stream:{a{b}:events"), null);
});
