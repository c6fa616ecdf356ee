// An aborted generator leaves its job's end to the abort (docs/design.md, "Abort"): the
// abort claims the turn, signals, publishes its final event and only then records the job
// as aborted. A generator whose completion recorded "aborted" first let a silent reader
// find the job ended and nothing on the log, and make up a done that the abort's final
// event then contradicted (found by a mixed foreign run: Python abort, Node generator).
import assert from "node:assert/strict";
import { test } from "node:test";
import { GenerationJobManager } from "../src/manager.js";

/** A manager over stand-ins that answer every publish with `publish` and record the job
 * writes. @param {(kind: string) => unknown} publish */
function managerWith(publish) {
  /** @type {Record<string, unknown>[]} */
  const writes = [];
  /** @type {(() => void)[]} */
  const abortCallbacks = [];
  const jobs = {
    createJob: async () => ({ startSeq: 0 }),
    /** @param {string} _stream @param {Record<string, unknown>} update */
    updateJob: async (_stream, update) => {
      writes.push(update);
      return true;
    },
  };
  const transport = {
    checkLostWrites: async () => {},
    startProducing: () => {},
    stopProducing: () => {},
    removeAbort: async () => {},
    /** @param {string} _s @param {string} _g @param {() => void} callback */
    onAbort: async (_s, _g, callback) => {
      abortCallbacks.push(callback);
    },
    /** @param {string} _s @param {string} _g @param {string} kind */
    emit: async (_s, _g, kind) => publish(kind),
  };
  const settings = { heartbeatIntervalS: 10, cleanupIntervalS: 60, earlyBufferMaxEvents: 10, earlyBufferMaxBytes: 1024 };
  // @ts-ignore: stand-ins for the parts the generator side uses
  const manager = new GenerationJobManager({ jobs, transport, bus: null, settings, newId: () => "g1" });
  return { manager, writes, abortCallbacks };
}

/** @param {Record<string, unknown>[]} writes */
const statuses = (writes) => writes.filter((w) => w.status !== undefined).map((w) => w.status);

for (const end of ["done", "error"]) {
  test(`a generator refused by an abort's claim (its ${end}) records no status`, async () => {
    const { manager, writes } = managerWith(() => "aborted");
    await manager.createJob("s1", "u1");
    const refused = end === "done" ? await manager.emitDone("s1", { final: true }) : await manager.emitError("s1", "boom");
    assert.equal(refused, null);
    await manager.completeJob("s1", end === "error" ? "boom" : null);
    assert.deepEqual(statuses(writes), [], "the abort records the end after its terminal is on the log");
  });
}

test("a generator told to stop by the abort's signal records no status", async () => {
  const { manager, writes, abortCallbacks } = managerWith(() => "aborted");
  const job = await manager.createJob("s1", "u1");
  for (const callback of abortCallbacks) callback();
  assert.equal(job.stopReason, "aborted");
  await manager.completeJob("s1");
  assert.deepEqual(statuses(writes), []);
});

test("a generator whose own terminal was published records its end", async () => {
  const { manager, writes } = managerWith(() => ({ seq: 0, counterRegressed: false }));
  await manager.createJob("s1", "u1");
  assert.notEqual(await manager.emitDone("s1", { final: true }), null);
  await manager.completeJob("s1");
  assert.deepEqual(statuses(writes), ["complete"]);
});
