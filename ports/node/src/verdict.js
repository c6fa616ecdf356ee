// What a silent subscriber learns from the job record (pure), as impl/transport/_verdict.py.
//
// Called when a subscriber has heard nothing for a while and the chunk log holds nothing
// beyond its frontier: the terminal must then be decided from the job itself, or the
// reader would hang for ever.

import { done, failure } from "./events.js";
import { SUPERSEDED } from "./reorder.js";

/** @typedef {import("./events.js").Terminal} Terminal */
/** @typedef {import("./jobstore.js").Job} Job */

export const STREAM_LOST = "stream expired or lost before its end was delivered";
export const PRODUCER_LOST = "producer lost: the generating replica stopped responding";

/**
 * The terminal to deliver, or null to keep waiting.
 * @param {Job | null} job
 * @param {{ generation: string, nextSeq: number, nowMs: number, producerTimeoutMs: number }} at
 * @returns {Terminal | null}
 */
export function silentSubscriberVerdict(job, { generation, nextSeq, nowMs, producerTimeoutMs }) {
  if (job === null) return failure(nextSeq, generation, STREAM_LOST);
  if (job.generationId !== generation) return failure(nextSeq, generation, SUPERSEDED);
  if (job.status === "error") return failure(nextSeq, generation, job.error ?? "Unknown error");
  if (job.status !== "running") {
    let data = null;
    if (job.finalEvent !== null) {
      try {
        data = JSON.parse(job.finalEvent);
      } catch {
        data = null;
      }
    }
    return done(nextSeq, generation, data);
  }
  const lastAlive = job.lastActiveAt ?? job.createdAt;
  if (nowMs - lastAlive > producerTimeoutMs) return failure(nextSeq, generation, PRODUCER_LOST);
  return null;
}
