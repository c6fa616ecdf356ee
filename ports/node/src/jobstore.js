// The job hash `stream:{id}:job`, shared by every replica, as impl/jobstore/_redis.py and
// _codec.py: LibreChat's camelCase fields, every write a compare-and-set Lua script.
//
// Keys (the stream id is the Cluster hash tag):
// * `stream:{id}:job` hash; TTL 1200 s while running, 300 s once terminal.
// * `stream:{id}:chunks` the chunk log (the transport writes it); it expires with the job.
// * `stream:{id}:seq` the stream's counter, read once at creation for `startSeq`.
// * `stream:running` and `stream:user:{userId}:jobs` sets: cross-slot indices, kept by
//   separate commands and healed by readers.
//
// A hash another writer corrupted never crashes a reader: an unparsable optional field
// reads as absent, a hash without the required fields or with an unknown status reads as
// no job at all.

import { Keys, validateId } from "./keys.js";
import { LuaScript, call, runScript } from "./redis.js";

/** @typedef {import("./redis.js").Client} Client */
/** @typedef {"running" | "complete" | "error" | "aborted"} JobStatus */
/** @typedef {{ messageId: string, parentMessageId: string | null, conversationId: string | null, text: string | null }} UserMessage */

/**
 * What every replica can know about a job.
 * @typedef {object} Job
 * @property {string} streamId
 * @property {string} userId
 * @property {JobStatus} status
 * @property {number} createdAt wall clock, ms
 * @property {string} generationId the turn's identity; a new turn on the stream gets a new one
 * @property {number} startSeq the first seq this turn may use: the counter at creation
 * @property {number | null} completedAt
 * @property {string | null} conversationId
 * @property {string | null} error
 * @property {UserMessage | null} userMessage
 * @property {string | null} responseMessageId
 * @property {string | null} sender
 * @property {string | null} finalEvent the terminal done payload as JSON text, for late readers
 * @property {number | null} lastActiveAt
 */

/** A partial update; absent fields are left as they are.
 * @typedef {{ status?: JobStatus, completedAt?: number, error?: string | null, finalEvent?: string, userMessage?: UserMessage }} JobUpdate */

export const RUNNING_TTL_S = 1200;
export const COMPLETED_TTL_S = 300;
export const STALE_JOB_TIMEOUT_MS = 1200 * 1000;

/** @type {readonly JobStatus[]} */
const STATUSES = ["running", "complete", "error", "aborted"];

/** A status change the lifecycle table forbids (a terminal status never changes). */
export class IllegalTransition extends Error {
  /** @param {string} streamId @param {string} current @param {string} requested */
  constructor(streamId, current, requested) {
    super(`can't move stream ${JSON.stringify(streamId)} from status ${JSON.stringify(current)} to ${JSON.stringify(requested)}`);
    this.name = "IllegalTransition";
    this.current = current;
  }
}

export const SCRIPTS = {
  create: new LuaScript("job_create"),
  update: new LuaScript("job_update"),
  remove: new LuaScript("job_delete"),
  touch: new LuaScript("job_touch"),
};

/** LibreChat's JSON of its userMessage (absent keys dropped).
 * @param {UserMessage} message */
function encodeMessage(message) {
  /** @type {Record<string, string>} */
  const raw = {};
  for (const [key, value] of Object.entries(message)) if (value !== null) raw[key] = value;
  return JSON.stringify(raw);
}

/** The hash fields an update (or a new job) sets.
 * @param {JobUpdate & { streamId?: string, userId?: string, createdAt?: number, generationId?: string }} fields
 * @returns {string[]} field, value, field, value, ... (HSET's order) */
function encodeFields(fields) {
  /** @type {string[]} */
  const out = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value === null || value === undefined) continue;
    out.push(name, name === "userMessage" ? encodeMessage(/** @type {UserMessage} */ (value)) : String(value));
  }
  return out;
}

/** @param {string | undefined} text */
function parseInt10(text) {
  return text !== undefined && /^\s*[+-]?\d+\s*$/.test(text) ? Number.parseInt(text, 10) : null;
}

/** @param {string | undefined} text @returns {UserMessage | null} */
function parseMessage(text) {
  if (text === undefined) return null;
  let raw;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object" || typeof raw.messageId !== "string") return null;
  /** @param {string} key */
  const textField = (key) => (typeof raw[key] === "string" && raw[key] ? raw[key] : null);
  return {
    messageId: raw.messageId,
    parentMessageId: textField("parentMessageId"),
    conversationId: textField("conversationId"),
    text: textField("text"),
  };
}

/** The job in an HGETALL reply, or null if it is absent or unusable.
 * @param {string} streamId @param {Record<string, string>} raw
 * @returns {Job | null} */
export function decodeJob(streamId, raw) {
  /** @type {Record<string, string>} */
  const present = {};
  for (const [name, value] of Object.entries(raw)) if (value !== "") present[name] = value;
  const status = /** @type {JobStatus} */ (present.status);
  const createdAt = parseInt10(present.createdAt);
  if (!STATUSES.includes(status) || !present.userId || !present.generationId || createdAt === null) {
    if (Object.keys(raw).length > 0) console.error(`job ${streamId}: unusable hash; treating it as absent`);
    return null;
  }
  return {
    streamId: present.streamId ?? streamId,
    userId: present.userId,
    status,
    createdAt,
    generationId: present.generationId,
    startSeq: Math.max(parseInt10(present.startSeq) ?? 0, 0),
    completedAt: parseInt10(present.completedAt),
    conversationId: present.conversationId ?? null,
    error: present.error ?? null,
    userMessage: parseMessage(present.userMessage),
    responseMessageId: present.responseMessageId ?? null,
    sender: present.sender ?? null,
    finalEvent: present.finalEvent ?? null,
    lastActiveAt: parseInt10(present.lastActiveAt),
  };
}

/** @param {unknown} reply */
function scriptText(reply) {
  if (typeof reply === "string" || typeof reply === "number") return String(reply);
  throw new TypeError(`unexpected script reply ${JSON.stringify(reply)}`);
}

export class RedisJobStore {
  /**
   * @param {Client} redis
   * @param {{ keys?: Keys, nowMs?: () => number, runningTtlS?: number, completedTtlS?: number, staleJobTimeoutMs?: number }} [options]
   */
  constructor(redis, { keys = new Keys(), nowMs = Date.now, runningTtlS = RUNNING_TTL_S, completedTtlS = COMPLETED_TTL_S, staleJobTimeoutMs = STALE_JOB_TIMEOUT_MS } = {}) {
    this._redis = redis;
    this._keys = keys;
    this._nowMs = nowMs;
    this._runningTtlS = runningTtlS;
    this._completedTtlS = completedTtlS;
    this._staleJobTimeoutMs = staleJobTimeoutMs;
  }

  /** @param {string} streamId */
  _jobKeys(streamId) {
    const k = this._keys;
    return [k.job(streamId), k.chunks(streamId), k.runSteps(streamId)];
  }

  /** Create (or replace wholesale) the job; its `startSeq` is the stream counter's value,
   * read in the same atomic step. The indices are written before the script (a failed
   * call leaves at worst a stale entry, which readers heal) and after it (a reader healing
   * the index meanwhile cannot leave the new job unindexed).
   * @param {string} streamId @param {string} userId @param {string} generationId
   * @returns {Promise<Job>} */
  async createJob(streamId, userId, generationId) {
    validateId(streamId, "stream id");
    validateId(userId, "user id");
    const createdAt = this._nowMs();
    const fields = encodeFields({ streamId, userId, createdAt, generationId, status: "running" });
    await this._index(streamId, userId);
    const k = this._keys;
    const reply = await runScript(this._redis, SCRIPTS.create, [k.job(streamId), k.seq(streamId), k.runSteps(streamId)], [this._runningTtlS, ...fields]);
    await this._index(streamId, userId);
    return {
      streamId, userId, status: "running", createdAt, generationId,
      startSeq: Number(scriptText(reply)),
      completedAt: null, conversationId: null, error: null, userMessage: null,
      responseMessageId: null, sender: null, finalEvent: null, lastActiveAt: null,
    };
  }

  /** @param {string} streamId @param {string} userId */
  async _index(streamId, userId) {
    await call(this._redis.sadd(this._keys.running, streamId), "SADD");
    await call(this._redis.sadd(this._keys.userJobs(userId), streamId), "SADD");
  }

  /** @param {string} streamId @returns {Promise<Job | null>} */
  async getJob(streamId) {
    return decodeJob(streamId, await call(this._redis.hgetall(this._keys.job(streamId)), "HGETALL"));
  }

  /** Apply `update` if the job exists (and is generation `expectedGeneration`); false if
   * it does not (a missing job is never re-created). Throws IllegalTransition for a
   * status change the lifecycle forbids.
   * @param {string} streamId @param {JobUpdate} update @param {string | null} [expectedGeneration]
   * @returns {Promise<boolean>} */
  async updateJob(streamId, update, expectedGeneration = null) {
    const requested = update.status ?? "";
    const fields = encodeFields(update);
    const reply = scriptText(await runScript(this._redis, SCRIPTS.update, this._jobKeys(streamId), [expectedGeneration ?? "", requested, this._completedTtlS, this._nowMs(), ...fields]));
    if (reply === "missing") return false;
    if (reply.startsWith("illegal:")) throw new IllegalTransition(streamId, reply.slice("illegal:".length), requested);
    if (reply === "terminal") await this._unindex(this._keys.running, [streamId], null);
    else if (reply !== "ok") throw new Error(`unexpected reply ${reply} from the ${SCRIPTS.update.name} script`);
    return true;
  }

  /** Stamp `lastActiveAt` (current generation only) and extend the running TTL: the
   * producer's heartbeat, which readers judge its liveness by.
   * @param {string} streamId @param {string} generationId */
  async recordActivity(streamId, generationId) {
    await runScript(this._redis, SCRIPTS.touch, [this._keys.job(streamId)], [generationId, this._nowMs(), this._runningTtlS]);
  }

  /** SREM `ids`, then re-add those a concurrent create made running meanwhile.
   * @param {string} setKey @param {readonly string[]} ids @param {string | null} userId */
  async _unindex(setKey, ids, userId) {
    if (ids.length === 0) return;
    await call(this._redis.srem(setKey, ...ids), "SREM");
    for (const streamId of ids) {
      const job = await this.getJob(streamId);
      if (job === null || job.status !== "running") continue;
      if (userId === null || job.userId === userId) await call(this._redis.sadd(setKey, streamId), "SADD");
    }
  }

  /** Heal the running index and delete running jobs idle past the stale timeout (the
   * script re-checks generation and idleness atomically, so a replacement or a
   * just-active job survives). Returns how many ids left the index. */
  async cleanup() {
    const now = this._nowMs();
    const timeout = this._staleJobTimeoutMs;
    /** @type {string[]} */
    const leaving = [];
    const ids = await call(this._redis.smembers(this._keys.running), "SMEMBERS");
    for (const streamId of ids.sort()) {
      const job = await this.getJob(streamId);
      if (job === null || job.status !== "running") {
        leaving.push(streamId);
        continue;
      }
      const lastActive = job.lastActiveAt ?? job.createdAt;
      if (timeout === 0 || now - lastActive <= timeout) continue;
      const reply = await runScript(this._redis, SCRIPTS.remove, this._jobKeys(streamId), [job.generationId, now - timeout]);
      if (scriptText(reply) === "1") {
        console.error(`reaping stale job ${streamId} (generation ${job.generationId}): idle ${now - lastActive} ms`);
        leaving.push(streamId);
      }
    }
    await this._unindex(this._keys.running, leaving, null);
    return leaving.length;
  }
}
