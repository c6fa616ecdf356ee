// The reorder buffer driven by hand, without Redis (the cases of tests/test_reorder_core.py).

import assert from "node:assert/strict";
import { test } from "node:test";
import { chunk as makeChunk, done as makeDone, failure, gap, lostWrites } from "../src/events.js";
import { ReorderBuffer, SUPERSEDED } from "../src/reorder.js";

/** @typedef {import("../src/events.js").StreamEvent} StreamEvent */
/** @typedef {import("../src/events.js").LogRow} LogRow */

const G = "g1";
/** @param {number} seq */
const chunk = (seq, gen = G) => makeChunk(seq, gen, { n: seq });
/** @param {number} seq */
const done = (seq, gen = G) => makeDone(seq, gen, { final: true });

function make(start = 0, capacity = 100) {
  return new ReorderBuffer({ generation: G, startSeq: start, now: 0, timeout: 0.5, capacity, idleProbe: 2 });
}

/** A buffer past its (empty) initial catch-up. */
function live(start = 0, capacity = 100) {
  const buf = make(start, capacity);
  assert.equal(buf.begin(0).fetchFrom, start);
  buf.applyLog([], true, 0);
  return buf;
}

/** @param {StreamEvent[]} events */
const seqs = (events) => events.flatMap((e) => (e.kind === "gap" ? [] : [e.seq]));

test("in-order delivery passes straight through", () => {
  const buf = live();
  const delivered = [0, 1, 2].flatMap((i) => buf.offer(chunk(i), 0.1).deliver);
  assert.deepEqual(seqs(delivered), [0, 1, 2]);
});

test("out-of-order messages are reordered, and the idle probe is armed again", () => {
  const buf = live();
  assert.deepEqual(buf.offer(chunk(1), 0.1).deliver, []);
  assert.deepEqual(buf.offer(chunk(2), 0.1).deliver, []);
  const step = buf.offer(chunk(0), 0.2);
  assert.deepEqual(seqs(step.deliver), [0, 1, 2]);
  assert.equal(step.wakeAt, 0.2 + 2);
});

test("duplicates are dropped", () => {
  const buf = live();
  buf.offer(chunk(0), 0);
  assert.deepEqual(buf.offer(chunk(0), 0).deliver, []);
  buf.offer(chunk(2), 0);
  assert.deepEqual(buf.offer(chunk(2), 0).deliver, []);
  assert.equal(buf.stats.duplicates, 2);
});

test("a terminal waits behind missing chunks and ends the subscription", () => {
  const buf = live();
  assert.deepEqual(buf.offer(done(2), 0).deliver, []);
  buf.offer(chunk(1), 0);
  const step = buf.offer(chunk(0), 0);
  assert.deepEqual(seqs(step.deliver), [0, 1, 2]);
  assert.ok(step.finished);
  assert.deepEqual(buf.offer(chunk(3), 0).deliver, []);
});

test("a gap not filled in time is repaired from the log", () => {
  const buf = live();
  assert.equal(buf.offer(chunk(1), 1).wakeAt, 1.5); // 500 ms from the first parked message
  assert.equal(buf.onTimer(1.2).fetchFrom, null); // too early
  assert.equal(buf.onTimer(1.5).fetchFrom, 0);
  const step = buf.applyLog([chunk(0), chunk(1)], true, 1.6);
  assert.deepEqual(step.deliver, [chunk(0), chunk(1)]);
});

test("a gap missing from the log becomes a typed Gap event, never a silent skip", () => {
  const buf = live();
  buf.offer(chunk(2), 1);
  assert.equal(buf.onTimer(1.5).fetchFrom, 0);
  const step = buf.applyLog([chunk(2)], true, 1.6);
  assert.deepEqual(step.deliver, [gap(0, 1, G, "not_in_log"), chunk(2)]);
});

test("a gap is proven by a message parked before the read", () => {
  const buf = live();
  buf.offer(chunk(3), 1);
  buf.onTimer(1.5);
  const step = buf.applyLog([], true, 1.6); // the log was trimmed entirely
  assert.deepEqual(step.deliver, [gap(0, 2, G, "not_in_log"), chunk(3)]);
});

test("capacity triggers an immediate log read", () => {
  const buf = live(0, 3);
  buf.offer(chunk(1), 0);
  buf.offer(chunk(2), 0);
  assert.equal(buf.offer(chunk(3), 0).fetchFrom, 0);
});

test("a fresh attachment parks live traffic until its catch-up from the log", () => {
  const buf = make(5);
  assert.equal(buf.begin(0).fetchFrom, 5);
  assert.deepEqual(buf.offer(chunk(8), 0.1).deliver, []);
  assert.equal(buf.onTimer(10).fetchFrom, null); // a read is already in flight
  const step = buf.applyLog([chunk(5), chunk(6), chunk(7)], true, 0.2);
  assert.deepEqual(seqs(step.deliver), [5, 6, 7, 8]);
  assert.equal(buf.deferred, false);
});

test("the catch-up pages until the log is exhausted", () => {
  const buf = make(0);
  buf.begin(0);
  const step = buf.applyLog([chunk(0), chunk(1)], false, 0);
  assert.equal(step.fetchFrom, 2);
  assert.ok(buf.deferred);
  assert.deepEqual(seqs(buf.applyLog([chunk(2)], true, 0).deliver), [2]);
  assert.equal(buf.deferred, false);
});

test("the early buffer is replayed once and the log's copies are dropped", () => {
  const buf = make(0);
  assert.deepEqual(seqs(buf.preload([chunk(0), chunk(1)], 0).deliver), [0, 1]);
  assert.equal(buf.begin(0).fetchFrom, 2);
  buf.offer(chunk(1), 0); // the pub/sub copy of a replayed event
  assert.deepEqual(seqs(buf.applyLog([chunk(2)], true, 0).deliver), [2]);
});

test("a preload stops at a hole", () => {
  const buf = make(0);
  assert.deepEqual(seqs(buf.preload([chunk(0), chunk(2)], 0).deliver), [0]);
  assert.equal(buf.nextSeq, 1);
});

test("another generation at an unpassed seq is a newer turn: the reader ends superseded", () => {
  const buf = make(0);
  buf.begin(0);
  const step = buf.applyLog([chunk(0), chunk(1, "newer")], true, 0);
  assert.deepEqual(step.deliver.at(-1), failure(1, G, SUPERSEDED));
  assert.ok(step.finished);
});

test("the idle probe reads the log and reports silence", () => {
  const buf = live();
  assert.equal(buf.onTimer(1).fetchFrom, null);
  assert.equal(buf.onTimer(2).fetchFrom, 0);
  const step = buf.applyLog([], true, 2.1);
  assert.ok(step.idleAndEmpty);
  assert.ok(step.wakeAt !== null && step.wakeAt > 2.1);
});

test("a duplicate keeps the idle probe armed", () => {
  const buf = live();
  buf.offer(chunk(0), 0);
  buf.offer(chunk(2), 0.1);
  for (const duplicate of [chunk(0), chunk(2)]) {
    const step = buf.offer(duplicate, 0.2);
    assert.deepEqual(step.deliver, []);
    assert.notEqual(step.wakeAt, null);
  }
});

test("a failed read is retried after the timeout", () => {
  const buf = live();
  buf.offer(chunk(1), 1);
  buf.onTimer(1.5);
  assert.equal(buf.fetchFailed(1.6).wakeAt, 2.1);
  assert.equal(buf.onTimer(2.1).fetchFrom, 0);
});

test("a lost-writes row becomes a writes_lost gap", () => {
  const buf = live();
  buf.offer(chunk(0), 0);
  assert.equal(buf.onTimer(2).fetchFrom, 1);
  const step = buf.applyLog([lostWrites(1, 2), chunk(3)], true, 2);
  assert.deepEqual(step.deliver, [gap(1, 2, G, "writes_lost"), chunk(3)]);
});

test("seqs heard live before Redis lost them are still delivered", () => {
  const buf = live();
  buf.offer(chunk(1), 0);
  assert.equal(buf.onTimer(0.5).fetchFrom, 0);
  const step = buf.applyLog([lostWrites(0, 2)], true, 0.5);
  assert.deepEqual(step.deliver, [gap(0, 0, G, "writes_lost"), chunk(1), gap(2, 2, G, "writes_lost")]);
});

test("a lost row splits into missing, lost and possibly lost", () => {
  const buf = live();
  buf.onTimer(2);
  const step = buf.applyLog([lostWrites(2, 9, 4)], true, 2);
  assert.deepEqual(step.deliver, [gap(0, 1, G, "not_in_log"), gap(2, 3, G, "writes_lost"), gap(4, 9, G, "possibly_lost")]);
});

test("a superseded reader is told of published seqs that never arrived", () => {
  const buf = live();
  buf.notePublished(1);
  const step = buf.offer(chunk(0, "g2"), 0.1);
  assert.deepEqual(step.deliver, [gap(0, 1, G, "writes_lost"), failure(2, G, SUPERSEDED)]);
  assert.ok(step.finished);
});

test("a terminal from the job record follows a gap for known lost seqs", () => {
  const buf = live();
  buf.notePublished(0);
  const step = buf.endWith(failure(0, G, "producer lost"), 40);
  assert.deepEqual(step.deliver, [gap(0, 0, G, "writes_lost"), failure(1, G, "producer lost")]);
});

test("a live reader always has a timer or a log read in flight (seeded random inputs)", () => {
  let state = 7;
  const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let example = 0; example < 300; example += 1) {
    const buf = live();
    const logHasEverything = random() < 0.5;
    /** @type {Map<number, LogRow>} */
    const published = new Map();
    let now = 0;
    for (let i = 0; i < 30; i += 1) {
      const kind = Math.floor(random() * 4);
      let step;
      if (kind === 0) step = buf.onTimer((now += random() * 3));
      else if (kind === 1) step = buf.resync(now);
      else {
        const seq = Math.floor(random() * 7);
        if (!published.has(seq)) published.set(seq, kind === 2 ? done(seq) : chunk(seq));
        step = buf.offer(/** @type {import("../src/events.js").SequencedEvent} */ (published.get(seq)), now);
      }
      while (step.fetchFrom !== null) {
        const from = step.fetchFrom;
        const rows = [...published.keys()].sort((a, b) => a - b).filter((s) => s >= from).map((s) => /** @type {LogRow} */ (published.get(s)));
        step = buf.applyLog(logHasEverything ? rows : [], true, now);
      }
      assert.ok(step.finished || step.wakeAt !== null, `example ${example}, input ${i}`);
      if (step.finished) break;
    }
  }
});
