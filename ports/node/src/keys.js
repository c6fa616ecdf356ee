// The Redis key and channel layout, as impl/redis/_keys.py (LibreChat's, spec §2.1, §4.2).
//
// Per-stream keys carry the stream id as a Cluster hash tag (`{id}`), so one stream's keys
// share a slot and one Lua script may touch them all. The prefix applies to keys only:
// like ioredis's `keyPrefix` it never applies to pub/sub channel names.

const CHANNEL_PREFIX = "stream:{";
const CHANNEL_SUFFIX = "}:events";

export class Keys {
  /** @param {string} [prefix] */
  constructor(prefix = "") {
    this.prefix = prefix;
  }

  /** @param {string} streamId */
  job(streamId) {
    return `${this.prefix}stream:{${streamId}}:job`;
  }

  /** @param {string} streamId */
  chunks(streamId) {
    return `${this.prefix}stream:{${streamId}}:chunks`;
  }

  /** @param {string} streamId */
  runSteps(streamId) {
    return `${this.prefix}stream:{${streamId}}:runsteps`;
  }

  /** @param {string} streamId */
  seq(streamId) {
    return `${this.prefix}stream:{${streamId}}:seq`;
  }

  /** The run id of the Redis server that last advanced the counter (not in LibreChat:
   * it lets the publish script notice a failover or restart).
   * @param {string} streamId */
  seqEpoch(streamId) {
    return `${this.prefix}stream:{${streamId}}:seqepoch`;
  }

  get running() {
    return `${this.prefix}stream:running`;
  }

  /** @param {string} userId */
  userJobs(userId) {
    return `${this.prefix}stream:user:{${userId}}:jobs`;
  }

  /** @param {string} streamId */
  static channel(streamId) {
    return `${CHANNEL_PREFIX}${streamId}${CHANNEL_SUFFIX}`;
  }

  /** The stream id in `stream:{id}:events`, or null for any other channel.
   * @param {string} channel
   * @returns {string | null} */
  static streamIdOfChannel(channel) {
    if (!channel.startsWith(CHANNEL_PREFIX) || !channel.endsWith(CHANNEL_SUFFIX)) return null;
    const inner = channel.slice(CHANNEL_PREFIX.length, channel.length - CHANNEL_SUFFIX.length);
    if (!inner || inner.includes("{") || inner.includes("}")) return null;
    return inner;
  }
}

/** The chunk log's entry id of a sequenced event (impl/redis/_chunklog.py).
 * @param {number} seq */
export function entryId(seq) {
  return `${seq}-1`;
}

export const MAX_ID_LENGTH = 256;

/** A stream or user id, checked before it becomes part of a key (impl/_ids.py): a brace
 * would break the Cluster hash tag, a control character logs and key listings.
 * @param {unknown} value
 * @param {string} kind
 * @returns {string} */
export function validateId(value, kind) {
  if (typeof value !== "string") throw new TypeError(`${kind} must be a string, got ${typeof value}`);
  if (!value) throw new RangeError(`${kind} must not be empty`);
  if (value.length > MAX_ID_LENGTH) {
    throw new RangeError(`${kind} must be at most ${MAX_ID_LENGTH} characters, got ${value.length}`);
  }
  if (value.includes("{") || value.includes("}")) {
    throw new RangeError(`${kind} must not contain '{' or '}' (they delimit the Redis hash tag)`);
  }
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new RangeError(`${kind} must not contain control characters`);
  return value;
}
