// The public face of one replica, as impl/_manager.py (LibreChat's GenerationJobManager).
//
// A generator calls `createJob`, then `emitChunk` ... and one of `emitDone` / `emitError`,
// then `completeJob`. Clients call `subscribe` or `resume` on any replica, and `abortJob`
// on any replica:
//
//   const job = await manager.createJob("conv-1", "user-1");
//   await manager.emitChunk("conv-1", { event: "on_message_delta", data: ... });
//   await manager.emitDone("conv-1", { final: true });
//   await manager.completeJob("conv-1");
//
// What it keeps from the fixes of spec §5: readers attach only after SUBSCRIBE is
// acknowledged (#2); abort listeners keep the channel (#17); errors and final events are
// kept for late readers (#4); any replica serves and aborts any stream (#5, #7); a resume
// is a snapshot up to a seq plus everything after it (#6); one shared, monotonic counter
// with a floor (#8, #9, #10); catch-up is deferred until the frontier is known (#11); the
// early buffer is bounded (#13); every turn has a generation id that fences the previous
// turn's traffic (#16, #20).

import { randomUUID } from "node:crypto";
import { aggregateContent } from "./content.js";
import { Deferred } from "./defer.js";
import { EarlyBuffer } from "./early-buffer.js";
import { IllegalTransition } from "./jobstore.js";
import { validateId } from "./keys.js";
import { LOG_PAGE } from "./actor.js";

/** @typedef {import("./events.js").JSONValue} JSONValue */
/** @typedef {import("./events.js").Chunk} Chunk */
/** @typedef {import("./jobstore.js").Job} Job */
/** @typedef {import("./jobstore.js").RedisJobStore} RedisJobStore */
/** @typedef {import("./bus.js").RedisBus} RedisBus */
/** @typedef {import("./bus.js").Published} Published */
/** @typedef {import("./bus.js").Refusal} Refusal */
/** @typedef {import("./transport.js").EventTransport} EventTransport */
/** @typedef {import("./transport.js").Subscription} Subscription */

/** The error a turn ends with when it could not be started completely. */
export const START_FAILED = "generation failed to start: Redis connection lost during setup";

/** The stream does not exist or is not the caller's: the same error for both, so it
 * reveals nothing. Answer the client as for "not found". */
export class StreamAccessDenied extends Error {
  constructor() {
    super("stream not found or not yours");
    this.name = "StreamAccessDenied";
  }
}

/** Why a generator was told to stop: a user's abort (pressed on any replica) holds the
 * turn; the turn ended without this generator (its job ended, e.g. judged lost); a newer
 * turn replaced it or its job vanished; it could not start.
 * @typedef {"aborted" | "turn_ended" | "replaced" | "start_failed"} StopReason */

/** The generator's handle on its turn: `aborted` resolves when the generator must stop, on
 * an abort from anywhere or because the turn ended; `stopReason` says which. */
export class GenerationJob {
  /** @param {string} streamId @param {string} userId @param {string} generation @param {number} startSeq */
  constructor(streamId, userId, generation, startSeq) {
    this.streamId = streamId;
    this.userId = userId;
    this.generation = generation;
    this.startSeq = startSeq;
    /** @type {Deferred<void>} */
    this.aborted = new Deferred();
    /** @type {string | null} */
    this.error = null;
    /** @type {StopReason | null} */
    this.stopReason = null;
    /** This generator's own done or error was published (the fence let it end the turn). */
    this.publishedTerminal = false;
  }

  get isAborted() {
    return this.aborted.settled;
  }

  /** Tell the generator to stop; the first reason given is the one kept.
   * @param {StopReason} reason */
  stop(reason) {
    if (this.stopReason === null) this.stopReason = reason;
    this.aborted.resolve();
  }
}

/**
 * @typedef {object} AbortResult
 * @property {"aborted" | "already_terminal" | "no_such_stream"} outcome
 * @property {Job | null} job
 * @property {JSONValue} finalEvent the aborted turn's Done payload (`aborted` only)
 * @property {number | null} terminalSeq the seq of that Done (`aborted` only)
 */

/**
 * A reconnecting client's snapshot: the turn's chunks up to `throughSeq`, folded.
 * @typedef {object} ResumeState
 * @property {string} generationId
 * @property {number | null} throughSeq
 * @property {number[]} foldedSeqs
 * @property {JSONValue[]} aggregatedContent
 */

/**
 * @typedef {object} ManagerSettings
 * @property {number} heartbeatIntervalS how often a live generation stamps `lastActiveAt`
 * @property {number} cleanupIntervalS
 * @property {number} earlyBufferMaxEvents
 * @property {number} earlyBufferMaxBytes
 */

export class GenerationJobManager {
  /**
   * @param {{ jobs: RedisJobStore, transport: EventTransport, bus: RedisBus, settings: ManagerSettings, nowMs?: () => number, newId?: () => string }} parts
   */
  constructor({ jobs, transport, bus, settings, nowMs = Date.now, newId = randomUUID }) {
    this.jobs = jobs;
    this.transport = transport;
    this._bus = bus;
    this._settings = settings;
    this._nowMs = nowMs;
    this._newId = newId;
    /** @type {Map<string, GenerationJob>} */
    this._runtimes = new Map();
    /** @type {NodeJS.Timeout | null} */
    this._ticker = null;
    this._nextCleanupAt = 0;
  }

  // -- generator side --------------------------------------------------------------

  /** Start a new turn on `streamId`; a previous turn on it is superseded.
   * @param {string} streamId @param {string} userId @returns {Promise<GenerationJob>} */
  async createJob(streamId, userId) {
    validateId(streamId, "stream id");
    validateId(userId, "user id");
    const previous = this._runtimes.get(streamId);
    if (previous !== undefined) {
      this._runtimes.delete(streamId);
      await this._retire(previous);
    }
    // Before the new turn reads its start seq: if a failover lost the end of the previous
    // turn, its readers must learn that from the log, not from silence.
    await this.transport.checkLostWrites(streamId);
    const generation = this._newId();
    const data = await this.jobs.createJob(streamId, userId, generation);
    const job = new GenerationJob(streamId, userId, generation, data.startSeq);
    this._runtimes.set(streamId, job);
    this.transport.startProducing(streamId, generation, new EarlyBuffer(this._settings.earlyBufferMaxEvents, this._settings.earlyBufferMaxBytes));
    try {
      await this.transport.onAbort(streamId, generation, () => job.stop("aborted"));
    } catch (error) {
      // Without its abort listener the turn cannot be stopped from elsewhere, so it must
      // not start: a runtime left behind would heartbeat a job nobody finishes.
      if (this._runtimes.get(streamId) === job) this._runtimes.delete(streamId);
      job.stop("start_failed");
      this.transport.stopProducing(streamId, generation);
      await this.jobs.updateJob(streamId, { status: "error", completedAt: this._nowMs(), error: START_FAILED }, generation).catch(() => {});
      throw error;
    }
    return job;
  }

  /** Publish one chunk: its receipt, or null if it was dropped because the turn was
   * aborted, has ended or was superseded.
   * @param {string} streamId @param {JSONValue} event @returns {Promise<Published | null>} */
  async emitChunk(streamId, event) {
    const job = this._runtimes.get(streamId);
    if (job === undefined || job.isAborted) return null;
    return this._published(job, await this.transport.emit(streamId, job.generation, "chunk", event));
  }

  /** @param {string} streamId @param {JSONValue} finalEvent @returns {Promise<Published | null>} */
  async emitDone(streamId, finalEvent) {
    const job = this._runtimes.get(streamId);
    if (job === undefined) return null;
    // Kept in the job first, so a reader that finds the job ended gets this payload.
    await this.jobs.updateJob(streamId, { finalEvent: JSON.stringify(finalEvent) }, job.generation);
    return this._publishedTerminal(job, await this.transport.emit(streamId, job.generation, "done", finalEvent));
  }

  /** @param {string} streamId @param {string} message @returns {Promise<Published | null>} */
  async emitError(streamId, message) {
    const job = this._runtimes.get(streamId);
    if (job === undefined) return null;
    job.error = message;
    await this.jobs.updateJob(streamId, { error: message }, job.generation);
    return this._publishedTerminal(job, await this.transport.emit(streamId, job.generation, "error", message));
  }

  /** Record the end of the turn; the job stays until its TTL for late readers.
   * @param {string} streamId @param {string | null} [error] */
  async completeJob(streamId, error = null) {
    const job = this._runtimes.get(streamId);
    if (job === undefined) return;
    this._runtimes.delete(streamId);
    if (job.stopReason === "aborted" && !job.publishedTerminal) {
      // An abort holds the turn: it records the end itself, after its terminal is on the
      // log. A terminal status written here first would let a silent reader take the job
      // for the turn's end and make up a terminal the abort's then contradicts.
      await this._retire(job);
      return;
    }
    const status = job.isAborted ? "aborted" : error || job.error ? "error" : "complete";
    try {
      await this.jobs.updateJob(streamId, { status, completedAt: this._nowMs(), error }, job.generation);
    } catch (e) {
      if (!(e instanceof IllegalTransition)) throw e;
      // An abort from another replica ended the turn first (its terminal won the fence),
      // or the job was judged lost: the job already holds that outcome.
      job.stop("turn_ended");
    } finally {
      await this._retire(job);
    }
  }

  /** @param {GenerationJob} job @param {Published | Refusal} outcome */
  _publishedTerminal(job, outcome) {
    if (typeof outcome !== "string") job.publishedTerminal = true;
    return this._published(job, outcome);
  }

  /** @param {GenerationJob} job @param {Published | Refusal} outcome */
  _published(job, outcome) {
    if (typeof outcome !== "string") return outcome;
    if (outcome === "aborted") job.stop("aborted");
    else if (outcome === "no_job" || outcome === "other_generation") job.stop("replaced");
    else job.stop("turn_ended"); // an abort's terminal, or the turn judged lost
    return null;
  }

  /** @param {GenerationJob} job */
  async _retire(job) {
    this.transport.stopProducing(job.streamId, job.generation);
    await this.transport.removeAbort(job.streamId, job.generation);
  }

  // -- client side -----------------------------------------------------------------

  /** @param {string} streamId @param {string} userId @returns {Promise<Job>} */
  async _ownedJob(streamId, userId) {
    validateId(streamId, "stream id");
    validateId(userId, "user id");
    const job = await this.jobs.getJob(streamId);
    if (job === null || job.userId !== userId) throw new StreamAccessDenied();
    return job;
  }

  /** Attach to the current turn from its first event (or its stored end).
   * @param {string} streamId @param {string} userId */
  async subscribe(streamId, userId) {
    const job = await this._ownedJob(streamId, userId);
    return this.transport.subscribe(streamId, { generation: job.generationId, startSeq: job.startSeq, jobEnded: job.status !== "running" });
  }

  /** A snapshot of the turn so far, and a subscription to everything after it.
   * @param {string} streamId @param {string} userId
   * @returns {Promise<{ state: ResumeState, subscription: Subscription }>} */
  async resume(streamId, userId) {
    const job = await this._ownedJob(streamId, userId);
    // The snapshot stops before seqs Redis lost, so the reader is told of them by a Gap in
    // the live part instead of receiving a snapshot with a silent hole.
    const chunks = await this._loggedChunks(job, true);
    const through = chunks.length > 0 ? chunks[chunks.length - 1].seq : null;
    const subscription = await this.transport.subscribe(streamId, {
      generation: job.generationId,
      startSeq: through !== null ? through + 1 : job.startSeq,
      jobEnded: job.status !== "running",
    });
    const state = {
      generationId: job.generationId,
      throughSeq: through,
      foldedSeqs: chunks.map((c) => c.seq),
      aggregatedContent: aggregateContent(chunks.map((c) => c.data)),
    };
    return { state, subscription };
  }

  /** The turn's chunks from the log, in order, up to (not including) its terminal (and
   * with `stopAtLost`, up to the first seqs Redis lost).
   * @param {Job} job @param {boolean} stopAtLost @returns {Promise<Chunk[]>} */
  async _loggedChunks(job, stopAtLost) {
    /** @type {Chunk[]} */
    const chunks = [];
    let cursor = job.startSeq;
    for (;;) {
      const rows = await this._bus.readLog(job.streamId, cursor, LOG_PAGE);
      for (const row of rows) {
        if (row.kind === "lost") {
          if (stopAtLost && row.seq >= job.startSeq) return chunks;
          continue;
        }
        if (row.generation !== job.generationId) continue;
        if (row.kind !== "chunk") return chunks; // the terminal comes live, never folded
        chunks.push(row);
      }
      if (rows.length < LOG_PAGE) return chunks;
      cursor = rows[rows.length - 1].seq + 1;
    }
  }

  /** Stop the turn wherever it runs and publish its aborted final event. A stream that
   * does not exist or is not the caller's throws StreamAccessDenied.
   * @param {string} streamId @param {string} userId @returns {Promise<AbortResult>} */
  async abortJob(streamId, userId) {
    const job = await this._ownedJob(streamId, userId);
    if (job.status !== "running") return { outcome: "already_terminal", job, finalEvent: null, terminalSeq: null };
    // Accept the abort first: the claim fences the turn as aborted (from then on the fence
    // refuses the generator's chunks and its own done or error), then the generator is
    // told. The other order lets a generator that answers the signal with its own
    // terminal win the race, and the abort's final event would be lost.
    const refused = await this.transport.claimAbort(streamId, job.generationId);
    if (refused === "no_job" || refused === "other_generation") {
      return { outcome: "no_such_stream", job: null, finalEvent: null, terminalSeq: null };
    }
    if (refused !== null) {
      return { outcome: "already_terminal", job: await this.jobs.getJob(streamId), finalEvent: null, terminalSeq: null };
    }
    await this.transport.emitAbort(streamId, job.generationId);
    const local = this._runtimes.get(streamId);
    if (local !== undefined && local.generation === job.generationId) local.stop("aborted");
    // The claim refuses the generator's chunks from here on: the content is final.
    const content = aggregateContent((await this._loggedChunks(job, false)).map((c) => c.data));
    const finalEvent = abortFinalEvent(job, content);
    const outcome = await this.transport.emit(streamId, job.generationId, "done", finalEvent, true);
    if (outcome === "terminal_already_sent") {
      // Another abort of the same turn published the terminal first.
      return { outcome: "already_terminal", job: await this.jobs.getJob(streamId), finalEvent: null, terminalSeq: null };
    }
    if (outcome === "no_job" || outcome === "other_generation") {
      return { outcome: "no_such_stream", job: null, finalEvent: null, terminalSeq: null };
    }
    try {
      await this.jobs.updateJob(streamId, { status: "aborted", completedAt: this._nowMs(), finalEvent: JSON.stringify(finalEvent) }, job.generationId);
    } catch (error) {
      // The generator's own completion may record its status between our publish and this
      // write: our Done is the terminal readers received; the job is ended either way.
      if (!(error instanceof IllegalTransition)) throw error;
    }
    return { outcome: "aborted", job, finalEvent, terminalSeq: typeof outcome === "string" ? null : outcome.seq };
  }

  // -- housekeeping ------------------------------------------------------------------

  /** Retire runtimes whose job is gone or replaced, stop idle actors, heal the index. */
  async cleanup() {
    const removed = await this.jobs.cleanup();
    for (const [streamId, job] of [...this._runtimes]) {
      const current = await this.jobs.getJob(streamId);
      if (current === null || current.generationId !== job.generation) {
        // Identity check: never retire a replacement turn (spec §5 #20).
        if (this._runtimes.get(streamId) === job) this._runtimes.delete(streamId);
        job.stop("replaced");
        await this._retire(job);
      }
    }
    for (const streamId of this.transport.trackedStreamIds()) {
      if (!this._runtimes.has(streamId) && this.transport.isIdle(streamId)) this.transport.cleanup(streamId);
    }
    return removed;
  }

  /** Heartbeats of live generations and the periodic cleanup, until `stop`. */
  start() {
    this._nextCleanupAt = Date.now() + this._settings.cleanupIntervalS * 1000;
    const tick = async () => {
      for (const [streamId, job] of [...this._runtimes]) {
        // An aborted turn has no generator any more: a heartbeat would keep readers waiting
        // for ever if Redis lost the abort's writes.
        if (job.isAborted) continue;
        await this.jobs.recordActivity(streamId, job.generation).catch((/** @type {Error} */ e) => console.error(`heartbeat for ${streamId} failed: ${e.message}`));
      }
      if (Date.now() >= this._nextCleanupAt) {
        this._nextCleanupAt = Date.now() + this._settings.cleanupIntervalS * 1000;
        await this.cleanup().catch((/** @type {Error} */ e) => console.error(`cleanup failed: ${e.message}`));
      }
      if (this._ticker !== null) this._ticker = setTimeout(tick, this._settings.heartbeatIntervalS * 1000);
    };
    this._ticker = setTimeout(tick, this._settings.heartbeatIntervalS * 1000);
  }

  stop() {
    if (this._ticker !== null) clearTimeout(this._ticker);
    this._ticker = null;
  }
}

/** LibreChat's abort final event (spec §1.4 step 6).
 * @param {Job} job @param {JSONValue[]} content @returns {JSONValue} */
function abortFinalEvent(job, content) {
  const early = content.length === 0 && job.responseMessageId === null;
  const message = job.userMessage;
  return {
    final: true,
    aborted: true,
    earlyAbort: early,
    conversation: early ? null : { conversationId: job.conversationId },
    requestMessage: message === null ? null : { ...message },
    responseMessage: {
      messageId: job.responseMessageId ?? (message !== null ? `${message.messageId}_` : null),
      content,
      sender: job.sender ?? "AI",
      unfinished: true,
    },
  };
}
