// The Redis boundary: ioredis clients set up for this design, Lua scripts by SHA, and the
// one rule that tells a connection failure (the call may or may not have taken effect)
// from a Redis error (a programming error). impl/redis/_coredis.py is the Python twin.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Redis, Cluster, ReplyError } from "ioredis";

/** @typedef {Redis | Cluster} Client */
/** @typedef {string | number} ScriptArg */

/** A Lua script made of files in src/lua/, joined in order: byte for byte impl's text
 * (tests/test_node_port.py checks), so both ports run one script with one SHA. */
export class LuaScript {
  /** @param {string} name @param {readonly string[]} [parts] file names without `.lua` (default: the name) */
  constructor(name, parts = [name]) {
    this.name = name;
    this.source = parts.map((part) => readFileSync(new URL(`./lua/${part}.lua`, import.meta.url), "utf8")).join("");
    this.sha1 = createHash("sha1").update(this.source).digest("hex");
  }
}

/** A call failed on its way to or from Redis: it may or may not have taken effect. */
export class RedisConnectionError extends Error {
  /** @param {string} message @param {unknown} [cause] */
  constructor(message, cause) {
    super(message, { cause });
    this.name = "RedisConnectionError";
  }
}

/** Redis errors that say "not now, ask again" about the server, not the call: a server
 * still loading its data, a cluster reconfiguring, a write to a demoted primary. */
const TRANSIENT_REPLIES = ["LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"];

/** Every failure that is not Redis answering with an error about the call itself is a
 * connection failure: a closed or reset socket, a command flushed on a reconnect, a server
 * that is not ready.
 * @param {unknown} error */
export function isConnectionError(error) {
  if (!(error instanceof Error)) return false;
  if (!(error instanceof ReplyError)) return true;
  return TRANSIENT_REPLIES.some((word) => error.message.startsWith(word));
}

/** Run `promise`, turning connection failures into RedisConnectionError.
 * @template T
 * @param {Promise<T>} promise
 * @param {string} what
 * @returns {Promise<T>} */
export async function call(promise, what) {
  try {
    return await promise;
  } catch (error) {
    if (!(error instanceof RedisConnectionError) && isConnectionError(error)) {
      throw new RedisConnectionError(`${what}: ${error instanceof Error ? error.message : String(error)}`, error);
    }
    throw error;
  }
}

/** EVALSHA, falling back to EVAL when the server does not have the script (a restart or a
 * new server empties its cache). A NOSCRIPT reply means the script did not run, so the
 * fallback can never run it twice.
 * @param {Client} redis
 * @param {LuaScript} script
 * @param {readonly string[]} keys
 * @param {readonly ScriptArg[]} args
 * @returns {Promise<unknown>} */
export async function runScript(redis, script, keys, args) {
  try {
    return await call(redis.evalsha(script.sha1, keys.length, ...keys, ...args), script.name);
  } catch (error) {
    if (!(error instanceof ReplyError) || !String(/** @type {Error} */ (error).message).startsWith("NOSCRIPT")) throw error;
    return call(redis.eval(script.source, keys.length, ...keys, ...args), script.name);
  }
}

/** How every connection of a replica comes back: quickly, since pub/sub losses can only be
 * recovered once the subscriber is back (20 ms, doubling up to 1 s).
 * @param {number} attempt */
const retryStrategy = (attempt) => Math.min(20 * 2 ** (attempt - 1), 1000);

/** Options for every ioredis connection of this design. The ones that matter:
 * no command is ever sent twice (a publish resent after a reconnect would publish its
 * event twice: `autoResendUnfulfilledCommands: false`), and a call in flight when the
 * connection drops fails at once (`maxRetriesPerRequest: 0`: it means "maybe done").
 * The subscriber re-subscribes by itself (`autoResubscribe: false`), so that it knows
 * when a reconnection happened and which streams must re-read their log. */
export const CLIENT_OPTIONS = Object.freeze({
  autoResendUnfulfilledCommands: false,
  autoResubscribe: false,
  maxRetriesPerRequest: 0,
  retryStrategy,
  // RESP2, as LibreChat's ioredis 5 speaks it.
  protocol: 2,
  lazyConnect: true,
});

/** A client for `url` (redis:// or rediss://), or a cluster client seeded with it.
 * @param {string} url
 * @param {boolean} cluster
 * @returns {Client} */
export function openClient(url, cluster) {
  if (!cluster) return new Redis(url, { ...CLIENT_OPTIONS });
  const { hostname, port } = new URL(url);
  return new Cluster([{ host: hostname, port: Number(port || 6379) }], {
    redisOptions: { ...CLIENT_OPTIONS },
    clusterRetryStrategy: retryStrategy,
    lazyConnect: true,
  });
}

/** Connect `client`, failing with a message that names the server.
 * @param {Client} client @param {string} url */
export async function connect(client, url) {
  try {
    await client.connect();
  } catch (error) {
    const where = url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
    throw new RedisConnectionError(`cannot reach Redis at ${where}: ${error instanceof Error ? error.message : error}`, error);
  }
}
