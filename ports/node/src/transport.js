// The per-replica registry of stream actors and the sink of the bus, as
// impl/transport/_transport.py (LibreChat's IEventTransport).
//
// * `subscribe` returns only after the channel subscription is acknowledged, then the
//   reader catches up from the chunk log (or the producer's early buffer) at its start
//   seq, so nothing between that seq and "live" is lost or duplicated.
// * Incoming traffic for a stream with no local actor is dropped (nothing here needs it).
// * The channel stays subscribed while abort callbacks exist, even with no reader, so a
//   Stop pressed elsewhere still reaches the generator (spec §5 #17).

import { StreamActor } from "./actor.js";
import { encodeBody } from "./envelope.js";
import { EventQueue } from "./queue.js";

/** @typedef {import("./events.js").JSONValue} JSONValue */
/** @typedef {import("./events.js").EventKind} EventKind */
/** @typedef {import("./events.js").StreamEvent} StreamEvent */
/** @typedef {import("./envelope.js").Incoming} Incoming */
/** @typedef {import("./bus.js").RedisBus} RedisBus */
/** @typedef {import("./bus.js").Published} Published */
/** @typedef {import("./bus.js").Refusal} Refusal */
/** @typedef {import("./actor.js").ActorTimings} ActorTimings */
/** @typedef {import("./jobstore.js").RedisJobStore} RedisJobStore */
/** @typedef {import("./early-buffer.js").EarlyBuffer} EarlyBuffer */

/** An event's encoded size is over the limit; it was not published. */
export class EventTooLarge extends RangeError {
  /** @param {string} streamId @param {number} size @param {number} limit */
  constructor(streamId, size, limit) {
    super(`event for stream ${JSON.stringify(streamId)} is ${size} bytes, over the ${limit}-byte limit; split it into smaller chunks`);
    this.name = "EventTooLarge";
  }
}

/** A live attachment: iterate it for events; it ends after the terminal. Leaving early
 * (`close`) detaches it. */
export class Subscription {
  /**
   * @param {EventTransport} transport
   * @param {{ streamId: string, generation: string, subId: number, startSeq: number, events: EventQueue<StreamEvent> }} spec
   */
  constructor(transport, { streamId, generation, subId, startSeq, events }) {
    this.streamId = streamId;
    this.generation = generation;
    this.subId = subId;
    /** The first seq this subscription is owed. */
    this.startSeq = startSeq;
    this._transport = transport;
    this._events = events;
    this._closed = false;
  }

  /** @returns {AsyncIterator<StreamEvent>} */
  [Symbol.asyncIterator]() {
    return { next: () => this._events.next() };
  }

  async close() {
    if (this._closed) return;
    this._closed = true;
    this._events.abandon();
    await this._transport._detach(this);
  }
}

export class EventTransport {
  /**
   * @param {RedisBus} bus
   * @param {RedisJobStore} jobs
   * @param {{ timings: ActorTimings, maxEventBytes: number, nowMs: () => number, crashed: (error: unknown) => void }} options
   */
  constructor(bus, jobs, { timings, maxEventBytes, nowMs, crashed }) {
    this._bus = bus;
    this._jobs = jobs;
    this._timings = timings;
    this._maxEventBytes = maxEventBytes;
    this._nowMs = nowMs;
    this._crashed = crashed;
    /** @type {Map<string, StreamActor>} */
    this._actors = new Map();
    /** Calls in progress per stream: an actor with one of these is not idle, whatever its
     * subscriber count says yet. @type {Map<string, number>} */
    this._inProgress = new Map();
    this._nextSubId = 0;
    this.malformedDropped = 0;
    /** Abort signals for a generator running here that no abort had claimed (forged). */
    this.unconfirmedAbortsDropped = 0;
    bus.attachSink(this);
  }

  // -- the bus's sink --------------------------------------------------------------

  /** @param {string} streamId @param {Incoming} message */
  deliver(streamId, message) {
    this._actors.get(streamId)?.incoming(message);
  }

  /** @param {string} streamId */
  restored(streamId) {
    this._actors.get(streamId)?.restored();
  }

  /** @param {string | null} streamId @param {string} reason */
  malformed(streamId, reason) {
    this.malformedDropped += 1;
    console.error(`dropped malformed message for stream ${streamId}: ${reason}`);
  }

  // -- actors ----------------------------------------------------------------------

  /** @param {string} streamId */
  _actor(streamId) {
    let actor = this._actors.get(streamId);
    if (actor === undefined) {
      const droppedAbort = () => {
        this.unconfirmedAbortsDropped += 1;
      };
      actor = new StreamActor(streamId, { bus: this._bus, jobs: this._jobs, timings: this._timings, nowMs: this._nowMs, crashed: this._crashed, droppedAbort });
      this._actors.set(streamId, actor);
    }
    return actor;
  }

  /** Run `work` counted as in progress on the stream, so cleanup never stops its actor
   * under it.
   * @template T @param {string} streamId @param {() => Promise<T>} work @returns {Promise<T>} */
  async _holding(streamId, work) {
    this._inProgress.set(streamId, (this._inProgress.get(streamId) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const remaining = /** @type {number} */ (this._inProgress.get(streamId)) - 1;
      if (remaining > 0) this._inProgress.set(streamId, remaining);
      else this._inProgress.delete(streamId);
    }
  }

  // -- publishing --------------------------------------------------------------------

  /** @param {string} streamId @param {string} generation @param {EventKind} kind @param {JSONValue} body
   * @param {boolean} [byAbort] the Done of an abort, after `claimAbort`
   * @returns {Promise<Published | Refusal>} */
  async emit(streamId, generation, kind, body, byAbort = false) {
    const encoded = encodeBody(body);
    if (encoded.length > this._maxEventBytes) throw new EventTooLarge(streamId, encoded.length, this._maxEventBytes);
    return await this._holding(streamId, () => this._actor(streamId).emit(generation, kind, body, encoded, byAbort));
  }

  /** Fence `generation` as aborted (see RedisBus.claimAbort).
   * @param {string} streamId @param {string} generation */
  claimAbort(streamId, generation) {
    return this._bus.claimAbort(streamId, generation);
  }

  /** @param {string} streamId @param {string} generation */
  emitAbort(streamId, generation) {
    return this._bus.publishAbort(streamId, generation);
  }

  /** @param {string} streamId @param {string} generation @param {EarlyBuffer} early */
  startProducing(streamId, generation, early) {
    this._actor(streamId).produce(generation, early);
  }

  /** @param {string} streamId @param {string} generation */
  stopProducing(streamId, generation) {
    this._actors.get(streamId)?.stopProducing(generation);
  }

  // -- subscribing ---------------------------------------------------------------------

  /** Attach a reader of `generation` from `startSeq` on.
   * @param {string} streamId
   * @param {{ generation: string, startSeq: number, jobEnded: boolean }} spec
   * @returns {Promise<Subscription>} */
  subscribe(streamId, { generation, startSeq, jobEnded }) {
    return this._holding(streamId, async () => {
      const actor = this._actor(streamId);
      await this._holdChannel(streamId);
      /** @type {EventQueue<StreamEvent>} */
      const events = new EventQueue();
      const subId = ++this._nextSubId;
      try {
        await actor.attach(subId, { generation, startSeq, out: events, jobEnded });
      } catch (error) {
        await this._bus.releaseChannel(streamId);
        throw error;
      }
      return new Subscription(this, { streamId, generation, subId, startSeq, events });
    });
  }

  /** Hold the stream's channel for a reader: resolves once Redis acknowledged the
   * SUBSCRIBE, so everything published from then on arrives live, and the catch-up that
   * follows reads the rest from the log (spec §5 #2: not waiting lost events).
   * @param {string} streamId */
  _holdChannel(streamId) {
    return this._bus.acquireChannel(streamId);
  }

  /** @param {Subscription} subscription */
  async _detach(subscription) {
    const actor = this._actors.get(subscription.streamId);
    if (actor !== undefined) await actor.detach(subscription.subId);
    await this._bus.releaseChannel(subscription.streamId);
  }

  /** If Redis lost seqs of the stream (this replica saw them, or the server was restarted
   * or failed over), push the shared counter past them and log them as lost, so that
   * what comes next never reuses their numbers.
   * @param {string} streamId */
  checkLostWrites(streamId) {
    return this._holding(streamId, async () => {
      const actor = this._actors.get(streamId);
      if (actor !== undefined) await actor.audit();
      else await this._bus.markLost(streamId, 0);
    });
  }

  // -- abort ----------------------------------------------------------------------------

  /** Call `callback` when any replica aborts `generation`; holds the channel
   * (acknowledged before this resolves) until `removeAbort`.
   * @param {string} streamId @param {string} generation @param {() => void} callback */
  onAbort(streamId, generation, callback) {
    return this._holding(streamId, async () => {
      const actor = this._actor(streamId);
      await this._bus.acquireChannel(streamId);
      actor.onAbort(generation, callback);
    });
  }

  /** @param {string} streamId @param {string} generation */
  async removeAbort(streamId, generation) {
    const actor = this._actors.get(streamId);
    if (actor === undefined) return;
    actor.onAbort(generation, null);
    await this._bus.releaseChannel(streamId);
  }

  // -- lifecycle ---------------------------------------------------------------------------

  trackedStreamIds() {
    return [...this._actors.keys()];
  }

  /** @param {string} streamId */
  isIdle(streamId) {
    if (this._inProgress.has(streamId)) return false;
    const actor = this._actors.get(streamId);
    return actor === undefined || (actor.subscriberCount === 0 && !actor.hasAbortCallbacks);
  }

  /** Stop the stream's actor (its job is gone or idle here; a later call starts a fresh one).
   * @param {string} streamId */
  cleanup(streamId) {
    this._actors.get(streamId)?.stop();
    this._actors.delete(streamId);
  }

  destroy() {
    for (const streamId of [...this._actors.keys()]) this.cleanup(streamId);
  }
}
