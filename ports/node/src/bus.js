// The Redis bus, as impl/transport/_redis_bus.py: the only part of the transport that
// knows Redis. It
// * publishes one event atomically with the publish script (fence check, INCR of
//   `stream:{id}:seq`, XADD `<seq>-1` to `stream:{id}:chunks`, PUBLISH on
//   `stream:{id}:events`);
// * reads the chunk log by seq, the truth for catch-up and gap repair;
// * repairs the counter after Redis lost writes (`markLost`), leaving a `lost` row;
// * holds channel subscriptions by reference count on one pub/sub connection per
//   replica; `acquireChannel` returns only once Redis acknowledged the SUBSCRIBE;
// * rebuilds that connection when it dies, re-subscribes, and only then tells the sink
//   which streams were restored, so their readers re-read the log: whatever was published
//   while the connection was down is in the log, and anything later arrives live.

import { Deferred } from "./defer.js";
import { decode, encodeAbort, encodeSplit, MalformedPayload } from "./envelope.js";
import { chunk, done, failure, lostWrites } from "./events.js";
import { Keys, entryId } from "./keys.js";
import { LuaScript, RedisConnectionError, call, runScript } from "./redis.js";

/** @typedef {import("./redis.js").Client} Client */
/** @typedef {import("ioredis").Redis} Redis */
/** @typedef {import("./events.js").LogRow} LogRow */
/** @typedef {import("./events.js").LostWrites} LostWrites */
/** @typedef {import("./events.js").EventKind} EventKind */
/** @typedef {import("./envelope.js").Incoming} Incoming */
/** Why the publish fence refused an event: no job, another turn owns the stream, the turn
 * ended or sent its terminal, or an abort claimed it (only the abort's terminal may follow).
 * @typedef {"no_job" | "other_generation" | "job_ended" | "terminal_already_sent" | "aborted"} Refusal */
/** @typedef {{ seq: number, counterRegressed: boolean }} Published */

/**
 * Where the bus hands what arrives (the transport).
 * @typedef {object} Sink
 * @property {(streamId: string, message: Incoming) => void} deliver
 * @property {(streamId: string) => void} restored
 * @property {(streamId: string | null, reason: string) => void} malformed
 */

/** Counter TTL (spec §2.3): sliding, extend-only, 24 h. */
export const COUNTER_TTL_S = 86_400;
/** Seqs skipped after a failover when the counter is already past the server's clock. */
export const FAILOVER_SKIP = 10_000;

// Each is its Lua functions, one step each, then the lines that run them (as impl builds
// them: the texts must be the same to the byte).
export const PUBLISH = new LuaScript("publish", ["fence", "raise_to_floor", "log_and_publish", "publish"]);
export const MARK_LOST = new LuaScript("mark_lost", ["raise_to_floor", "mark_lost"]);
export const CLAIM_ABORT = new LuaScript("claim_abort", ["fence", "claim_abort"]);
export const ABORT_CLAIMED = new LuaScript("abort_claimed", ["fence", "abort_claimed"]);

/** @type {Record<number, Refusal>} */
const REFUSALS = {
  [-1]: "no_job",
  [-2]: "other_generation",
  [-3]: "job_ended",
  [-4]: "terminal_already_sent",
  [-5]: "aborted",
};

class Channel {
  refs = 0;
  acked = false;
  /** @type {Promise<void> | null} */
  inFlight = null;
}

export class RedisBus {
  /**
   * @param {Client} redis commands
   * @param {Redis} subscriber a connection of its own for pub/sub (not yet connected)
   * @param {{ keys?: Keys, logTtlS?: number }} [options]
   */
  constructor(redis, subscriber, { keys = new Keys(), logTtlS = 1200 } = {}) {
    this._redis = redis;
    this._sub = subscriber;
    this._keys = keys;
    this._logTtlS = logTtlS;
    /** @type {Sink | null} */
    this._sink = null;
    /** @type {Map<string, Channel>} */
    this._channels = new Map();
    /** Resolved while the subscriber is connected and re-subscribed. */
    this._connected = new Deferred();
    /** Counts connections of the subscriber, so a stale re-subscription stops. */
    this._epoch = 0;
    this._closed = false;
    subscriber.on("message", (/** @type {string} */ channel, /** @type {string} */ data) => this._dispatch(channel, data));
    subscriber.on("ready", () => void this._onReady());
    subscriber.on("close", () => this._onClose());
    subscriber.on("error", (/** @type {Error} */ error) => console.error(`pub/sub connection: ${error.message}`));
  }

  /** @param {Sink} sink */
  attachSink(sink) {
    this._sink = sink;
  }

  /** Connect the subscriber; resolves once it is ready for subscriptions. */
  async start() {
    await this._sub.connect();
    await this._connected.promise;
  }

  close() {
    this._closed = true;
    this._sub.disconnect();
  }

  // -- publishing ----------------------------------------------------------------

  /**
   * Allocate a seq `>= floor`, log and publish the event; or refuse it without side
   * effects (the publish fence: a replaced turn never publishes again, no chunk follows a
   * terminal, a generation has at most one terminal, once an abort claimed the turn only
   * its terminal follows).
   * @param {string} streamId
   * @param {{ generation: string, kind: EventKind, encodedBody: string, logPayload: string, floor: number, byAbort: boolean }} event
   *   `encodedBody` is the body as encodeBody wrote it; `logPayload` what the log keeps
   *   (the same, or an error's message); `byAbort` for an abort's terminal
   * @returns {Promise<Published | Refusal>}
   */
  async publish(streamId, { generation, kind, encodedBody, logPayload, floor, byAbort }) {
    const [prefix, suffix] = encodeSplit(kind, generation, encodedBody);
    const k = this._keys;
    const reply = await runScript(
      this._redis,
      PUBLISH,
      [k.seq(streamId), k.chunks(streamId), k.job(streamId), k.seqEpoch(streamId)],
      [generation, kind, prefix, suffix, Keys.channel(streamId), floor, logPayload, this._logTtlS, COUNTER_TTL_S, FAILOVER_SKIP, byAbort ? "1" : "0"],
    );
    if (!Array.isArray(reply) || reply.length !== 2) {
      throw new RedisConnectionError(`unexpected publish script reply ${JSON.stringify(reply)}`);
    }
    const code = Number(reply[0]);
    if (code < 0) return refusalOf(code);
    const counterRegressed = Number(reply[1]) !== 0;
    if (counterRegressed) console.error(`stream ${streamId}: Redis counter went backwards; pushed to ${code}`);
    return { seq: code, counterRegressed };
  }

  /** An abort's first step: fence `generation` as aborted, so that from now on the publish
   * fence refuses its generator's events and only the abort's terminal may follow. Null
   * once claimed (by this abort or another), else why not.
   * @param {string} streamId @param {string} generation
   * @returns {Promise<Refusal | null>} */
  async claimAbort(streamId, generation) {
    const code = Number(await runScript(this._redis, CLAIM_ABORT, [this._keys.job(streamId)], [generation]));
    return code === 0 ? null : refusalOf(code);
  }

  /** Whether an abort claimed `generation`'s turn (the claim as the publish fence sees
   * it): what a replica asks before it obeys an abort signal, which anyone who can
   * PUBLISH may forge.
   * @param {string} streamId @param {string} generation
   * @returns {Promise<boolean>} */
  async abortClaimed(streamId, generation) {
    const reply = await runScript(this._redis, ABORT_CLAIMED, [this._keys.job(streamId)], [generation]);
    return Number(reply) === 1;
  }

  /** Tell `generation`'s generator, on whichever replica, to stop (after `claimAbort`).
   * @param {string} streamId @param {string} generation */
  async publishAbort(streamId, generation) {
    await call(this._redis.publish(Keys.channel(streamId), encodeAbort(generation)), "PUBLISH");
  }

  /** If the counter is below `floor` (Redis lost writes this replica saw) or the server
   * changed, push it past them and log which seqs are gone; returns them, or null.
   * @param {string} streamId @param {number} floor
   * @returns {Promise<LostWrites | null>} */
  async markLost(streamId, floor) {
    const k = this._keys;
    const reply = await runScript(this._redis, MARK_LOST, [k.seq(streamId), k.chunks(streamId), k.seqEpoch(streamId)], [floor, FAILOVER_SKIP, this._logTtlS, COUNTER_TTL_S]);
    if (!Array.isArray(reply) || reply.length !== 2) {
      throw new RedisConnectionError(`unexpected mark_lost script reply ${JSON.stringify(reply)}`);
    }
    const [first, last] = [Number(reply[0]), Number(reply[1])];
    if (first < 0) return null;
    console.error(`stream ${streamId}: Redis lost seqs ${first}..${last}; counter pushed`);
    return lostWrites(first, last);
  }

  /** Log rows with `seq >= fromSeq`, ascending, at most `count` (unreadable rows skipped).
   * @param {string} streamId @param {number} fromSeq @param {number} count
   * @returns {Promise<LogRow[]>} */
  async readLog(streamId, fromSeq, count) {
    const rows = await call(this._redis.xrange(this._keys.chunks(streamId), entryId(fromSeq), "+", "COUNT", count), "XRANGE");
    /** @type {LogRow[]} */
    const out = [];
    for (const [, flat] of rows) {
      /** @type {Record<string, string>} */
      const fields = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
      const row = decodeLogRow(fields);
      if (row === null) console.error(`stream ${streamId}: unreadable chunk-log row ${JSON.stringify(fields)}`);
      else out.push(row);
    }
    return out;
  }

  // -- subscriptions --------------------------------------------------------------

  /** Hold the stream's channel; resolves once Redis acknowledged the SUBSCRIBE. A failed
   * call leaves the reference count as it was.
   * @param {string} streamId */
  async acquireChannel(streamId) {
    let channel = this._channels.get(streamId);
    if (channel === undefined) {
      channel = new Channel();
      this._channels.set(streamId, channel);
    }
    channel.refs += 1;
    try {
      await this._ensureAcked(streamId, channel);
    } catch (error) {
      await this._dropRef(streamId, channel);
      throw error;
    }
  }

  /** @param {string} streamId */
  async releaseChannel(streamId) {
    const channel = this._channels.get(streamId);
    if (channel !== undefined) await this._dropRef(streamId, channel);
  }

  /** @param {string} streamId @param {Channel} channel */
  async _ensureAcked(streamId, channel) {
    while (!channel.acked) {
      if (channel.inFlight !== null) {
        // Another caller is subscribing: its acknowledgement is ours (or its failure
        // sends us round again).
        await channel.inFlight.catch(() => {});
        continue;
      }
      const attempt = this._subscribe(streamId, channel);
      channel.inFlight = attempt;
      try {
        await attempt;
      } catch (error) {
        // A reconnection meanwhile may have re-subscribed it: then it is held after all.
        if (!channel.acked) throw error;
      } finally {
        channel.inFlight = null;
      }
    }
  }

  /** @param {string} streamId @param {Channel} channel */
  async _subscribe(streamId, channel) {
    await this._connected.promise;
    const epoch = this._epoch;
    await call(this._sub.subscribe(Keys.channel(streamId)), "SUBSCRIBE");
    // Acknowledged on the connection that is still up (a reconnection since re-subscribed
    // every held channel, this one included, before it counted as connected).
    if (epoch === this._epoch) channel.acked = true;
  }

  /** @param {string} streamId @param {Channel} channel */
  async _dropRef(streamId, channel) {
    channel.refs -= 1;
    if (channel.refs > 0 || this._channels.get(streamId) !== channel) return;
    this._channels.delete(streamId);
    if (!channel.acked) return;
    try {
      await call(this._sub.unsubscribe(Keys.channel(streamId)), "UNSUBSCRIBE");
    } catch (error) {
      // A dead connection has no subscriptions left, and the channel will not be
      // re-subscribed: the unsubscribe has happened as far as anyone can observe.
      if (!(error instanceof RedisConnectionError)) throw error;
    }
  }

  /** @returns {string[]} */
  subscribedStreams() {
    return [...this._channels].filter(([, c]) => c.acked).map(([s]) => s);
  }

  // -- the pub/sub connection -------------------------------------------------------

  _onClose() {
    this._epoch += 1;
    if (this._connected.settled) this._connected = new Deferred();
    for (const channel of this._channels.values()) channel.acked = false;
  }

  async _onReady() {
    this._epoch += 1;
    const epoch = this._epoch;
    /** @type {string[]} */
    const restored = [];
    try {
      for (const [streamId, channel] of [...this._channels]) {
        if (channel.refs > 0 && !channel.acked) {
          await call(this._sub.subscribe(Keys.channel(streamId)), "SUBSCRIBE");
          if (epoch !== this._epoch) return;
          channel.acked = true;
          restored.push(streamId);
        }
      }
    } catch (error) {
      // The connection died again: its next "ready" starts over.
      if (!(error instanceof RedisConnectionError)) throw error;
      return;
    }
    if (epoch !== this._epoch || this._closed) return;
    this._connected.resolve();
    for (const streamId of restored) this._sink?.restored(streamId);
  }

  /** @param {string} channel @param {string} data */
  _dispatch(channel, data) {
    const sink = this._sink;
    if (sink === null) return;
    const streamId = Keys.streamIdOfChannel(channel);
    if (streamId === null) {
      sink.malformed(null, `message on foreign channel ${JSON.stringify(channel)}`);
      return;
    }
    let incoming;
    try {
      incoming = decode(data);
    } catch (error) {
      if (!(error instanceof MalformedPayload)) throw error;
      sink.malformed(streamId, error.reason);
      return;
    }
    if (Array.isArray(incoming)) {
      // A coalesced publish's batch (from a Python replica), decoded once.
      for (const event of incoming) sink.deliver(streamId, event);
    } else {
      sink.deliver(streamId, incoming);
    }
  }
}

/** @param {number} code @returns {Refusal} */
function refusalOf(code) {
  const refusal = REFUSALS[code];
  if (refusal === undefined) throw new Error(`unknown publish fence refusal code ${code}`);
  return refusal;
}

/** A chunk-log row (impl/redis/_chunklog.py's format), or null if it is unreadable.
 * @param {Record<string, string>} fields
 * @returns {LogRow | null} */
export function decodeLogRow(fields) {
  const seq = strictInt(fields.seq);
  const kind = fields.type;
  if (seq === null) return null;
  if (kind === "lost") {
    const first = strictInt(fields.first);
    const possibly = fields.possibly === undefined ? null : strictInt(fields.possibly);
    if (first === null || !(0 <= first && first <= seq)) return null;
    if (fields.possibly !== undefined && (possibly === null || !(first <= possibly && possibly <= seq))) return null;
    return lostWrites(first, seq, possibly);
  }
  const generation = fields.gen;
  if (generation === undefined) return null;
  if (kind === "error") return failure(seq, generation, fields.error ?? "");
  let data;
  try {
    data = JSON.parse(fields.event ?? "null");
  } catch {
    return null;
  }
  if (kind === "chunk") return chunk(seq, generation, data);
  if (kind === "done") return done(seq, generation, data);
  return null;
}

/** @param {string | undefined} text */
function strictInt(text) {
  return text !== undefined && /^-?\d+$/.test(text) ? Number(text) : null;
}
