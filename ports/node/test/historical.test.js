// The test folder's historical behaviours do what they say (their agents are measured by
// tests/test_node_port.py). This file runs in a process of its own, so the patch stays here.

import assert from "node:assert/strict";
import { test } from "node:test";
import { chunk } from "../src/events.js";
import { ReorderBuffer } from "../src/reorder.js";
import { forceFlushSkipsGap } from "./historical.js";

test("with the force-flush put back, a gap open for 500 ms is skipped silently", () => {
  const make = () => new ReorderBuffer({ generation: "g", startSeq: 0, now: 0, timeout: 0.5, capacity: 100, idleProbe: 2 });
  const before = make();
  before.begin(0);
  before.applyLog([], true, 0);
  before.offer(chunk(2, "g", null), 1);
  assert.equal(before.onTimer(1.5).fetchFrom, 0, "the design repairs from the log");

  forceFlushSkipsGap();
  const after = make();
  after.begin(0);
  after.applyLog([], true, 0);
  after.offer(chunk(2, "g", null), 1);
  const step = after.onTimer(1.5);
  assert.equal(step.fetchFrom, null);
  assert.deepEqual(step.deliver, [chunk(2, "g", null)]);
});
