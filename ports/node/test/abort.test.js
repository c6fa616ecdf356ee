// An abort signal from the channel is obeyed only once the bus confirms an abort claimed
// the turn (the cases of tests/test_forged_abort.py, without Redis: the actor over a
// stand-in bus that answers the claim check as told).

import assert from "node:assert/strict";
import { test } from "node:test";
import { StreamActor } from "../src/actor.js";
import { Deferred } from "../src/defer.js";
import { RedisConnectionError } from "../src/redis.js";

/** @typedef {import("../src/bus.js").RedisBus} RedisBus */
/** @typedef {import("../src/jobstore.js").RedisJobStore} RedisJobStore */

const G = "g1";
/** Bounds every wait (the actor answers within milliseconds, or one retry later). */
const WITHIN_MS = 5000;

/** The actor over a bus whose claim check gives `answers` in turn (an Error is thrown).
 * @param {(boolean | Error)[]} answers */
function actorAnswering(answers) {
  const checks = { asked: 0 };
  const stopped = new Deferred();
  const dropped = new Deferred();
  const bus = {
    /** @param {string} _streamId @param {string} generation */
    async abortClaimed(_streamId, generation) {
      assert.equal(generation, G);
      const answer = answers[Math.min(checks.asked, answers.length - 1)];
      checks.asked += 1;
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  const actor = new StreamActor("s1", {
    bus: /** @type {RedisBus} */ (/** @type {unknown} */ (bus)),
    jobs: /** @type {RedisJobStore} */ (/** @type {unknown} */ ({})),
    timings: { reorderTimeout: 0.5, reorderCapacity: 100, idleProbe: 2, producerTimeoutMs: 60_000 },
    nowMs: () => Date.now(),
    crashed: (error) => assert.fail(`the actor crashed: ${error}`),
    droppedAbort: () => dropped.resolve(),
  });
  actor.onAbort(G, () => stopped.resolve());
  return { actor, checks, stopped, dropped };
}

/** @param {Promise<void>} promise @param {string} what */
async function within(promise, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`within ${WITHIN_MS} ms: ${what}`)), WITHIN_MS);
  });
  try {
    await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

test("a forged abort signal (no claim) is dropped and counted; the generator runs on", async () => {
  const { actor, checks, stopped, dropped } = actorAnswering([false]);
  actor.incoming({ kind: "abort", generation: G });
  await within(dropped.promise, "the unclaimed signal was never dropped");
  assert.equal(stopped.settled, false);
  assert.equal(checks.asked, 1);
  actor.stop();
});

test("a claimed abort signal stops the generator", async () => {
  const { actor, stopped, dropped } = actorAnswering([true]);
  actor.incoming({ kind: "abort", generation: G });
  await within(stopped.promise, "the claimed abort never stopped the generator");
  assert.equal(dropped.settled, false);
  actor.stop();
});

test("a check Redis does not answer is asked again until it is: the abort still wins", async () => {
  const lost = new RedisConnectionError("injected: the reply was lost");
  const { actor, checks, stopped, dropped } = actorAnswering([lost, lost, true]);
  actor.incoming({ kind: "abort", generation: G });
  await within(stopped.promise, "the abort was lost with its check");
  assert.equal(checks.asked, 3);
  assert.equal(dropped.settled, false);
  actor.stop();
});

test("a signal for a generation that does not run here is not even checked", async () => {
  const { actor, checks, stopped } = actorAnswering([true]);
  actor.incoming({ kind: "abort", generation: "another" });
  actor.incoming({ kind: "abort", generation: G });
  await within(stopped.promise, "the claimed abort never stopped the generator");
  assert.equal(checks.asked, 1);
  actor.stop();
});
