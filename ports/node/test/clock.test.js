// The harness clock (protocol 2): a jump fires the timers it made due, earliest first, and
// no other; a cancelled timer never fires.
import assert from "node:assert/strict";
import { test } from "node:test";
import { advanceClock, atDeadline, machineMonotonic, monotonic } from "../src/clock.js";

test("a clock jump fires the timers it made due and leaves the rest", () => {
  /** @type {string[]} */
  const fired = [];
  const now = monotonic();
  const timers = [
    atDeadline(now + 7200, () => fired.push("in two hours")),
    atDeadline(now + 3600, () => fired.push("in an hour")),
    atDeadline(now + 1800, () => fired.push("in half an hour")),
    atDeadline(now + 60, () => fired.push("cancelled")),
  ];
  try {
    timers[3].cancel();
    advanceClock(3600);
    assert.deepEqual(fired, ["in half an hour", "in an hour"]);
    assert.ok(monotonic() - machineMonotonic() > 3599);
    timers[0].cancel();
    advanceClock(7200);
    assert.deepEqual(fired, ["in half an hour", "in an hour"]);
    assert.throws(() => advanceClock(-1), /never goes back/);
  } finally {
    for (const timer of timers) timer.cancel(); // a failure must not keep the process alive
  }
});
