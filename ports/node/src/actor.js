// One stream on one replica, as impl/transport/_actor.py: a serial command queue that
// alone owns the stream's local state: the producer's early buffer, every local
// subscriber's reorder buffer, the abort callbacks, and the highest seq seen here.
//
// Callers send commands and await their answer; commands are handled one at a time, in
// the order they were told, so every interleaving is a message order. The actor makes no
// decisions of its own: it feeds inputs to the sans-IO cores (ReorderBuffer, EarlyBuffer),
// performs the I/O they ask for (publish, log reads, job lookups) and reports failures
// back to them.

import { atDeadline, monotonic } from "./clock.js";
import { Deferred } from "./defer.js";
import { IllegalTransition } from "./jobstore.js";
import { RedisConnectionError } from "./redis.js";
import { ReorderBuffer } from "./reorder.js";
import { PRODUCER_LOST, silentSubscriberVerdict } from "./verdict.js";
import { chunk, done, failure } from "./events.js";

/** @typedef {import("./events.js").JSONValue} JSONValue */
/** @typedef {import("./events.js").EventKind} EventKind */
/** @typedef {import("./events.js").SequencedEvent} SequencedEvent */
/** @typedef {import("./events.js").StreamEvent} StreamEvent */
/** @typedef {import("./events.js").LostWrites} LostWrites */
/** @typedef {import("./envelope.js").Incoming} Incoming */
/** @typedef {import("./bus.js").RedisBus} RedisBus */
/** @typedef {import("./bus.js").Published} Published */
/** @typedef {import("./bus.js").Refusal} Refusal */
/** @typedef {import("./early-buffer.js").EarlyBuffer} EarlyBuffer */
/** @typedef {import("./jobstore.js").RedisJobStore} RedisJobStore */
/** @typedef {import("./reorder.js").Step} Step */
/** @template T @typedef {import("./queue.js").EventQueue<T>} EventQueue */

/** Rows per chunk-log read during catch-up and repair. */
export const LOG_PAGE = 500;
/** Generations whose last published seq (and whether they ended) an actor remembers. */
const REMEMBERED_GENERATIONS = 8;
/** When Redis did not answer whether an abort claimed a turn, ask again after this many
 * seconds (see `_obeyAbort`). */
export const ABORT_CHECK_RETRY_S = 0.25;

/**
 * @typedef {object} ActorTimings
 * @property {number} reorderTimeout seconds a gap may stay open
 * @property {number} reorderCapacity parked messages that trigger a log read
 * @property {number} idleProbe seconds of silence before a reader reads the log anyway
 * @property {number} producerTimeoutMs a running job unheard of for this long lost its producer
 */

/** The stream's actor has stopped (cleanup or shutdown): nothing more can be done here. */
export class StreamActorStopped extends Error {
  /** @param {string} streamId */
  constructor(streamId) {
    super(`the actor of stream ${JSON.stringify(streamId)} has stopped on this replica`);
    this.name = "StreamActorStopped";
  }
}

/**
 * @typedef {object} Subscriber
 * @property {number} subId
 * @property {ReorderBuffer} buffer
 * @property {EventQueue<StreamEvent>} out
 * @property {number | null} wakeAt
 * @property {boolean} jobEndedAtAttach the job had ended when it attached: if the log
 *   cannot supply the terminal, take it from the job record right after catch-up
 */

/**
 * @typedef {{ type: "emit", generation: string, kind: EventKind, body: JSONValue, encoded: string, byAbort: boolean, reply: Deferred<Published | Refusal> }
 *   | { type: "attach", subId: number, generation: string, startSeq: number, out: EventQueue<StreamEvent>, jobEnded: boolean, reply: Deferred<void> }
 *   | { type: "detach", subId: number, reply: Deferred<number> }
 *   | { type: "incoming", message: Incoming }
 *   | { type: "timers" }
 *   | { type: "restored" }
 *   | { type: "audit", reply: Deferred<void> }
 *   | { type: "produce", generation: string, early: EarlyBuffer }
 *   | { type: "stopProducing", generation: string }
 *   | { type: "onAbort", generation: string, callback: (() => void) | null }} Command
 */

/** @template K, V @param {Map<K, V>} map @param {K} key @param {V} value */
function remember(map, key, value) {
  map.delete(key);
  map.set(key, value);
  while (map.size > REMEMBERED_GENERATIONS) map.delete(/** @type {K} */ (map.keys().next().value));
}

export class StreamActor {
  /**
   * @param {string} streamId
   * @param {{ bus: RedisBus, jobs: RedisJobStore, timings: ActorTimings, nowMs: () => number, crashed: (error: unknown) => void, droppedAbort: () => void }} parts
   *   `crashed` is told of an unexpected error (a bug): the replica must not go on;
   *   `droppedAbort` of an abort signal no abort claimed (it is counted)
   */
  constructor(streamId, { bus, jobs, timings, nowMs, crashed, droppedAbort }) {
    this.streamId = streamId;
    this._bus = bus;
    this._jobs = jobs;
    this._timings = timings;
    this._nowMs = nowMs;
    this._crashed = crashed;
    this._droppedAbort = droppedAbort;
    /** @type {Command[]} */
    this._inbox = [];
    this._busy = false;
    this._stopped = false;
    /** @type {import("./clock.js").ClockTimer | null} */
    this._timer = null;
    this._timerAt = Infinity;
    /** @type {Map<number, Subscriber>} */
    this._subscribers = new Map();
    /** @type {{ generation: string, early: EarlyBuffer } | null} */
    this._producer = null;
    /** @type {Map<string, () => void>} */
    this._abortCallbacks = new Map();
    /** Abort signals whose claim Redis did not confirm nor deny yet: generation -> when
     * to ask again (monotonic seconds). @type {Map<string, number>} */
    this._abortChecks = new Map();
    /** Highest seq this replica has seen on the stream: the publish floor. */
    this._highWater = -1;
    /** Last seq each recent generation published from this replica: what readers here are
     * owed even if Redis loses it. @type {Map<string, number>} */
    this._published = new Map();
    /** Recent generations that published their terminal from this replica.
     * @type {Map<string, true>} */
    this._ended = new Map();
  }

  // -- the API (each call is one command) ------------------------------------------

  /** @param {string} generation @param {EventKind} kind @param {JSONValue} body @param {string} encoded
   * @param {boolean} byAbort the terminal of an abort that claimed the turn
   * @returns {Promise<Published | Refusal>} */
  emit(generation, kind, body, encoded, byAbort) {
    /** @type {Deferred<Published | Refusal>} */
    const reply = new Deferred();
    this._tell({ type: "emit", generation, kind, body, encoded, byAbort, reply });
    return reply.promise;
  }

  /** Attach a subscriber; resolves once it is registered (its catch-up goes on in the
   * actor, ahead of anything asked later).
   * @param {number} subId @param {{ generation: string, startSeq: number, out: EventQueue<StreamEvent>, jobEnded: boolean }} spec */
  attach(subId, { generation, startSeq, out, jobEnded }) {
    /** @type {Deferred<void>} */
    const reply = new Deferred();
    this._tell({ type: "attach", subId, generation, startSeq, out, jobEnded, reply });
    return reply.promise;
  }

  /** Remove a subscriber; resolves to how many remain (none once the actor stopped).
   * @param {number} subId */
  async detach(subId) {
    /** @type {Deferred<number>} */
    const reply = new Deferred();
    this._tell({ type: "detach", subId, reply });
    try {
      return await reply.promise;
    } catch (error) {
      if (error instanceof StreamActorStopped) return 0;
      throw error;
    }
  }

  /** @param {Incoming} message */
  incoming(message) {
    if (message.kind !== "abort" && this._subscribers.size === 0 && this._inbox.length === 0 && !this._stopped) {
      // With no reader here an event only moves the high-water mark (a producer hears its
      // own chunks on the channel it holds for aborts); nothing waits before it and the
      // update commutes with a command in progress, so it is what the actor would do next.
      this._highWater = Math.max(this._highWater, message.seq);
      return;
    }
    this._tell({ type: "incoming", message });
  }

  restored() {
    this._tell({ type: "restored" });
  }

  /** Make sure Redis still has every seq this replica saw (see `_markLost`). */
  audit() {
    /** @type {Deferred<void>} */
    const reply = new Deferred();
    this._tell({ type: "audit", reply });
    return reply.promise;
  }

  /** @param {string} generation @param {EarlyBuffer} early */
  produce(generation, early) {
    this._tell({ type: "produce", generation, early });
  }

  /** @param {string} generation */
  stopProducing(generation) {
    this._tell({ type: "stopProducing", generation });
  }

  /** Register (or with null remove) the abort callback of `generation`.
   * @param {string} generation @param {(() => void) | null} callback */
  onAbort(generation, callback) {
    this._tell({ type: "onAbort", generation, callback });
  }

  get subscriberCount() {
    return this._subscribers.size;
  }

  get hasAbortCallbacks() {
    return this._abortCallbacks.size > 0;
  }

  /** Stop for good: readers see their stream end (they resume elsewhere); requests queued
   * or made from now on are refused rather than left waiting. */
  stop() {
    this._stopped = true;
    this._timer?.cancel();
    this._timer = null;
    for (const subId of [...this._subscribers.keys()]) this._remove(subId);
    for (const command of this._inbox.splice(0)) this._refuse(command);
  }

  // -- the queue -------------------------------------------------------------------

  /** @param {Command} command */
  _tell(command) {
    if (this._stopped) {
      this._refuse(command);
      return;
    }
    this._inbox.push(command);
    if (!this._busy) void this._drain();
  }

  /** @param {Command} command */
  _refuse(command) {
    if ("reply" in command) command.reply.reject(new StreamActorStopped(this.streamId));
  }

  async _drain() {
    this._busy = true;
    try {
      for (let command = this._inbox.shift(); command !== undefined; command = this._inbox.shift()) {
        await this._handle(command);
        if (this._stopped) return;
      }
    } catch (error) {
      this._crashed(error);
    } finally {
      this._busy = false;
    }
    this._armTimer();
  }

  /** One timer per actor, at the earliest deadline any reader asked for. */
  _armTimer() {
    let deadline = Infinity;
    for (const sub of this._subscribers.values()) {
      if (sub.wakeAt !== null && sub.wakeAt < deadline) deadline = sub.wakeAt;
    }
    for (const due of this._abortChecks.values()) deadline = Math.min(deadline, due);
    if (deadline === this._timerAt) return;
    this._timer?.cancel();
    this._timer = null;
    this._timerAt = deadline;
    if (deadline === Infinity || this._stopped) return;
    this._timer = atDeadline(deadline, () => {
      this._timer = null;
      this._timerAt = Infinity;
      this._tell({ type: "timers" });
    });
  }

  /** @param {Command} command */
  async _handle(command) {
    const now = monotonic();
    switch (command.type) {
      case "emit":
        await this._publish(command);
        break;
      case "attach":
        await this._attach(command, now);
        break;
      case "detach":
        this._remove(command.subId);
        command.reply.resolve(this._subscribers.size);
        break;
      case "incoming": {
        const message = command.message;
        if (message.kind === "abort") {
          await this._obeyAbort(message.generation);
          break;
        }
        this._highWater = Math.max(this._highWater, message.seq);
        for (const sub of [...this._subscribers.values()]) await this._apply(sub, sub.buffer.offer(message, now));
        break;
      }
      case "timers":
        for (const [generation, due] of [...this._abortChecks]) {
          if (due <= now) await this._obeyAbort(generation);
        }
        for (const sub of [...this._subscribers.values()]) {
          if (sub.wakeAt !== null && sub.wakeAt <= now) {
            sub.wakeAt = null;
            await this._apply(sub, sub.buffer.onTimer(now));
          }
        }
        break;
      case "restored":
        await this._markLost();
        for (const sub of [...this._subscribers.values()]) await this._apply(sub, sub.buffer.resync(now));
        break;
      case "audit":
        try {
          await this._markLost();
        } finally {
          command.reply.resolve();
        }
        break;
      case "produce":
        this._producer = { generation: command.generation, early: command.early };
        break;
      case "stopProducing":
        if (this._producer?.generation === command.generation) this._producer = null;
        break;
      case "onAbort":
        if (command.callback === null) {
          this._abortCallbacks.delete(command.generation);
          this._abortChecks.delete(command.generation);
        } else this._abortCallbacks.set(command.generation, command.callback);
        break;
    }
  }

  // -- aborts ----------------------------------------------------------------------

  /** Stop `generation`'s generator, if it runs here, once Redis confirms that an abort
   * claimed its turn; otherwise drop the signal, count and log it.
   *
   * The signal on the channel is a hint anyone who can PUBLISH may forge; the claim in the
   * publish fence is the truth. A real signal always finds its claim: `abortJob` writes the
   * claim (`claimAbort`) and only then publishes the signal. (Unless a failover lost the
   * claim: the abort's terminal then ends the turn through the fence, and the generator's
   * next emit is refused, which stops it.)
   *
   * A check Redis did not answer decides nothing: obeying would let a forgery win whenever
   * a read fails, dropping would leave a real abort's stop to the generator's next emit.
   * The actor asks again every ABORT_CHECK_RETRY_S (from its timer, so its readers are
   * served meanwhile) until Redis answers or the generator leaves.
   * @param {string} generation */
  async _obeyAbort(generation) {
    if (!this._abortCallbacks.has(generation)) {
      this._abortChecks.delete(generation);
      return;
    }
    let claimed;
    try {
      claimed = await this._bus.abortClaimed(this.streamId, generation);
    } catch (error) {
      if (!(error instanceof RedisConnectionError)) throw error;
      console.error(`stream ${this.streamId}: could not check the abort of ${generation} (${error.message}); asking again`);
      this._abortChecks.set(generation, monotonic() + ABORT_CHECK_RETRY_S);
      return;
    }
    this._abortChecks.delete(generation);
    if (!claimed) {
      this._droppedAbort();
      console.error(`stream ${this.streamId}: dropped an abort signal for ${generation} that no abort claimed`);
      return;
    }
    this._abortCallbacks.get(generation)?.();
  }

  // -- publishing ------------------------------------------------------------------

  /** @param {Extract<Command, { type: "emit" }>} command */
  async _publish(command) {
    const { generation, kind, reply } = command;
    if (this._ended.has(generation)) {
      // Redis enforces this too, unless a failover lost the terminal: then only this
      // replica remembers that the turn already ended.
      reply.resolve(kind === "chunk" ? "job_ended" : "terminal_already_sent");
      return;
    }
    let outcome;
    try {
      outcome = await this._bus.publish(this.streamId, {
        generation,
        kind,
        encodedBody: command.encoded,
        logPayload: kind === "error" ? String(command.body) : command.encoded,
        floor: this._highWater + 1,
        byAbort: command.byAbort,
      });
    } catch (error) {
      reply.reject(error);
      if (error instanceof RedisConnectionError) return;
      throw error;
    }
    if (typeof outcome !== "string") {
      const seq = outcome.seq;
      this._highWater = Math.max(this._highWater, seq);
      remember(this._published, generation, seq);
      for (const sub of this._subscribers.values()) {
        if (sub.buffer.generation === generation) sub.buffer.notePublished(seq);
      }
      if (kind !== "chunk") remember(this._ended, generation, true);
      const producer = this._producer;
      if (producer !== null && producer.generation === generation) {
        // ASCII JSON: its length in characters is its size in bytes.
        producer.early.record(asEvent(command, seq), command.encoded.length);
      }
    }
    reply.resolve(outcome);
  }

  /** Redis may have lost writes (a failover or restart behind a reconnect): push the
   * counter past every seq this replica saw, and past a margin if the server changed,
   * and log them as lost, so no seq names two events and readers get a gap. The publish
   * script does the same on every emit; this covers replicas that learn of it first.
   * @returns {Promise<LostWrites | null>} */
  async _markLost() {
    try {
      return await this._bus.markLost(this.streamId, this._highWater + 1);
    } catch (error) {
      if (!(error instanceof RedisConnectionError)) throw error;
      console.error(`stream ${this.streamId}: lost-write check failed (${error.message})`);
      return null;
    }
  }

  // -- readers -----------------------------------------------------------------------

  /** @param {Extract<Command, { type: "attach" }>} command @param {number} now */
  async _attach(command, now) {
    const buffer = new ReorderBuffer({
      generation: command.generation,
      startSeq: command.startSeq,
      now,
      timeout: this._timings.reorderTimeout,
      capacity: this._timings.reorderCapacity,
      idleProbe: this._timings.idleProbe,
    });
    const published = this._published.get(command.generation);
    if (published !== undefined) buffer.notePublished(published);
    /** @type {Subscriber} */
    const sub = { subId: command.subId, buffer, out: command.out, wakeAt: null, jobEndedAtAttach: command.jobEnded };
    this._subscribers.set(command.subId, sub);
    command.reply.resolve();
    await this._catchUp(sub, now);
  }

  /** A fresh reader's catch-up: the producer's early buffer if this replica produces the
   * turn and nobody took it yet, then the chunk log from the frontier, while live traffic
   * parks in its buffer.
   * @param {Subscriber} sub @param {number} now */
  async _catchUp(sub, now) {
    const producer = this._producer;
    if (producer !== null && producer.generation === sub.buffer.generation && !producer.early.closed) {
      await this._apply(sub, sub.buffer.preload(producer.early.take(), now));
    }
    if (!sub.buffer.finished) await this._apply(sub, sub.buffer.begin(now));
  }

  /** Carry out a core's step, feeding I/O results back until it needs nothing.
   * @param {Subscriber} sub @param {Step} step */
  async _apply(sub, step) {
    if (this._carryOut(sub, step)) await this._complete(sub, step);
  }

  /** The part of a step that needs no I/O: its deliveries, its end, its timer. Returns
   * whether the step asks for I/O too.
   * @param {Subscriber} sub @param {Step} step */
  _carryOut(sub, step) {
    if (this._subscribers.get(sub.subId) !== sub) return false;
    for (const event of step.deliver) {
      if (!sub.out.push(event)) {
        // The reader left (it is detaching): nobody to deliver to.
        this._remove(sub.subId);
        return false;
      }
    }
    if (step.finished) {
      this._remove(sub.subId);
      return false;
    }
    sub.wakeAt = step.wakeAt;
    return step.fetchFrom !== null || step.idleAndEmpty;
  }

  /** Do the I/O `step` asks for, and carry out the steps that follow until one needs
   * nothing more.
   * @param {Subscriber} sub @param {Step} step */
  async _complete(sub, step) {
    for (;;) {
      if (step.fetchFrom !== null) {
        let rows;
        try {
          rows = await this._bus.readLog(this.streamId, step.fetchFrom, LOG_PAGE);
        } catch (error) {
          if (!(error instanceof RedisConnectionError)) throw error;
          console.error(`stream ${this.streamId}: log read failed (${error.message})`);
          step = sub.buffer.fetchFailed(monotonic());
          rows = null;
        }
        if (rows !== null) {
          if (rows.length > 0) this._highWater = Math.max(this._highWater, rows[rows.length - 1].seq);
          const exhausted = rows.length < LOG_PAGE;
          step = sub.buffer.applyLog(rows, exhausted, monotonic());
          if (exhausted && sub.jobEndedAtAttach && !step.finished) {
            sub.jobEndedAtAttach = false;
            step.idleAndEmpty = true;
          }
        }
      } else {
        // Idle and empty: has the turn ended without a word?
        const ended = await this._judgeSilence(sub);
        if (ended === null) return;
        step = ended;
      }
      if (!this._carryOut(sub, step)) return;
    }
  }

  /** @param {Subscriber} sub @returns {Promise<Step | null>} */
  async _judgeSilence(sub) {
    const buffer = sub.buffer;
    let job;
    try {
      job = await this._jobs.getJob(this.streamId);
    } catch (error) {
      if (error instanceof RedisConnectionError) return null;
      throw error;
    }
    const verdict = silentSubscriberVerdict(job, {
      generation: buffer.generation,
      nextSeq: buffer.nextSeq,
      nowMs: this._nowMs(),
      producerTimeoutMs: this._timings.producerTimeoutMs,
    });
    if (verdict === null) return null;
    // Before concluding from silence: the silence may be Redis having lost writes nobody
    // has logged as lost yet. If so, read the log again: the lost seqs arrive as a gap.
    const lost = await this._markLost();
    if (lost !== null && lost.seq >= buffer.nextSeq) return buffer.resync(monotonic());
    const ours = job !== null && job.generationId === buffer.generation;
    if (ours && job?.status === "running") {
      // The producer timed out. Fence it first (a producer that was only slow must not
      // publish on, acknowledged, to readers told it was gone), then let the next probe
      // read the log and the failure the job now stores.
      await this._fenceSilentProducer(buffer.generation);
      return null;
    }
    if (ours) {
      // The turn ended after this reader last read the log: its last events, the real
      // terminal among them, were logged before the job said it had ended. Read once more
      // before making a terminal up.
      let rows;
      try {
        rows = await this._bus.readLog(this.streamId, buffer.nextSeq, 1);
      } catch (error) {
        if (error instanceof RedisConnectionError) return null;
        throw error;
      }
      if (rows.length > 0) return buffer.resync(monotonic());
    }
    return buffer.endWith(verdict, monotonic());
  }

  /** Record the silent producer's turn as failed before readers are told so; if the job
   * moved on meanwhile (ended, or replaced), nothing is written.
   * @param {string} generation */
  async _fenceSilentProducer(generation) {
    try {
      await this._jobs.updateJob(this.streamId, { status: "error", completedAt: this._nowMs(), error: PRODUCER_LOST }, generation);
    } catch (error) {
      if (!(error instanceof IllegalTransition || error instanceof RedisConnectionError)) throw error;
    }
  }

  /** @param {number} subId */
  _remove(subId) {
    const sub = this._subscribers.get(subId);
    if (sub === undefined) return;
    this._subscribers.delete(subId);
    sub.buffer.close();
    sub.out.end();
  }
}

/** @param {Extract<Command, { type: "emit" }>} command @param {number} seq
 * @returns {SequencedEvent} */
function asEvent(command, seq) {
  if (command.kind === "chunk") return chunk(seq, command.generation, command.body);
  if (command.kind === "done") return done(seq, command.generation, command.body);
  return failure(seq, command.generation, String(command.body));
}
