// The Node port behind the replica protocol (docs/port-protocol.md): one replica per
// process. It reads the harness's JSON lines on stdin, performs each action with the
// port's public API (src/manager.js) and writes what happened as JSON lines on stdout.
// It decides nothing about correctness: ids and payloads come from the harness, which
// turns these lines into the history its checker judges.
//
// A generator performs its stream's creates, emits and ends one at a time, in the order
// they were asked for (an LLM's token loop), on a queue of its own per stream: a slow emit
// delays the next, it never reorders or skips it. Clients and aborts run concurrently.
//
// `node agent.js` runs it; the test folder's entry scripts run the same agent with a
// historical behaviour patched in (test/historical.js).

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { advanceClock, machineMonotonic } from "./src/clock.js";
import { asciiJson } from "./src/envelope.js";
import { StreamAccessDenied } from "./src/manager.js";
import { RedisConnectionError } from "./src/redis.js";
import { openReplica } from "./src/replica.js";

/** @typedef {import("./src/events.js").StreamEvent} StreamEvent */
/** @typedef {import("./src/events.js").JSONValue} JSONValue */
/** @typedef {import("./src/manager.js").GenerationJob} GenerationJob */
/** @typedef {import("./src/manager.js").GenerationJobManager} GenerationJobManager */
/** @typedef {import("./src/transport.js").Subscription} Subscription */
/** @typedef {import("./src/replica.js").ReplicaSettings} ReplicaSettings */

/**
 * One thing the harness asks of this replica.
 * @typedef {object} Action
 * @property {string} id
 * @property {"create" | "emit" | "done" | "error" | "abort" | "subscribe" | "resume" | "detach"} op
 * @property {string} stream
 * @property {number} at seconds after the plan's start (plan mode)
 * @property {string} user
 * @property {string} turn
 * @property {JSONValue} data
 * @property {string} message
 * @property {string} session
 */

/** Protocol 2: the harness may move this replica's clock ahead (`clock` lines). */
const PROTOCOL = 2;
const VERSION = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8")).version;
const CAPABILITIES = {
  seqs: true,
  resume: "seq",
  abort: true,
  gap_events: true,
  error_terminals: true,
  turns_per_stream: null,
  storage: "redis",
  harness_clock: true,
};
const OPS = new Set(["create", "emit", "done", "error", "abort", "subscribe", "resume", "detach"]);
const GENERATOR_OPS = new Set(["create", "emit", "done", "error"]);
/** The harness's settings this port has, by the protocol's names. @type {Record<string, keyof ReplicaSettings>} */
const SETTINGS = {
  reorder_timeout_s: "reorderTimeoutS",
  idle_probe_s: "idleProbeS",
  producer_timeout_s: "producerTimeoutS",
  heartbeat_interval_s: "heartbeatIntervalS",
  cleanup_interval_s: "cleanupIntervalS",
};

/** A line from the harness that breaks the protocol. */
class ProtocolError extends Error {}

/** Protocol lines on stdout, one write each, in ASCII (payloads may carry any character;
 * escaped, a line reads the same whatever encoding the harness reads it with). Pipes are
 * asynchronous in Node: `flushed` resolves once everything written has left the process. */
class Lines {
  constructor() {
    /** @type {Promise<void>} */
    this.flushed = Promise.resolve();
  }

  /** @param {string} type @param {Record<string, unknown>} [values] */
  write(type, values = {}) {
    const text = `${asciiJson({ type, ...values })}\n`;
    this.flushed = new Promise((resolve) => process.stdout.write(text, () => resolve()));
  }

  /** @param {string} type @param {Record<string, unknown>} values */
  timed(type, values) {
    this.write(type, { t: machineMonotonic(), ...values });
  }

  /** @param {Action} action @param {"ok" | "refused" | "indeterminate"} outcome @param {Record<string, unknown>} [values] */
  result(action, outcome, values = {}) {
    this.timed("result", { action: action.id, outcome, ...values });
  }
}

/** @param {StreamEvent} event */
function eventJson(event) {
  switch (event.kind) {
    case "chunk":
    case "done":
      return { kind: event.kind, seq: event.seq, generation: event.generation, data: event.data };
    case "error":
      return { kind: "error", seq: event.seq, generation: event.generation, message: event.message };
    case "gap":
      return { kind: "gap", first_seq: event.firstSeq, last_seq: event.lastSeq, generation: event.generation, reason: event.reason };
  }
}

/** @param {unknown} error */
const describe = (error) => (error instanceof Error ? error.message : String(error));

/** One replica of the port performing protocol actions. */
class NodeReplica {
  /** @param {GenerationJobManager} manager @param {Lines} lines */
  constructor(manager, lines) {
    this._manager = manager;
    this._lines = lines;
    /** Per stream, the generator's queue: each action starts when the one before ended.
     * @type {Map<string, Promise<GenerationJob | null>>} */
    this._generators = new Map();
    /** @type {Map<string, { subscription: Subscription, detached: boolean }>} */
    this._sessions = new Map();
  }

  /** Start `action`; it answers on stdout when it ends.
   * @param {Action} action */
  perform(action) {
    if (GENERATOR_OPS.has(action.op)) {
      const before = this._generators.get(action.stream) ?? Promise.resolve(null);
      this._generators.set(action.stream, before.then((job) => this._generate(action, job)));
    } else if (action.op === "abort") {
      void this._abort(action);
    } else if (action.op === "detach") {
      this._detach(action);
    } else {
      void this._attach(action);
    }
  }

  /** @param {Action} action @param {GenerationJob | null} job @returns {Promise<GenerationJob | null>} */
  async _generate(action, job) {
    this._lines.timed("invoked", { action: action.id });
    if (action.op === "create") return this._create(action);
    if (job === null) this._lines.result(action, "refused", { reason: "absent" });
    else await this._emit(action, job);
    return job;
  }

  /** @param {Action} action */
  async _create(action) {
    let job;
    try {
      job = await this._manager.createJob(action.stream, action.user);
    } catch (error) {
      if (!(error instanceof RedisConnectionError)) throw error;
      this._lines.result(action, "indeterminate", { reason: error.message });
      return null;
    }
    this._lines.result(action, "ok", { generation: job.generation, start_seq: job.startSeq });
    const generation = job.generation;
    void job.aborted.promise.then(() => this._lines.timed("stopped", { turn: action.turn, generation, reason: job.stopReason }));
    return job;
  }

  /** @param {Action} action @param {GenerationJob} job */
  async _emit(action, job) {
    const manager = this._manager;
    let receipt;
    try {
      if (action.op === "emit") receipt = await manager.emitChunk(action.stream, action.data);
      else if (action.op === "done") receipt = await manager.emitDone(action.stream, action.data);
      else receipt = await manager.emitError(action.stream, action.message);
      if (action.op !== "emit") await manager.completeJob(action.stream, action.op === "error" ? action.message : null);
    } catch (error) {
      if (!(error instanceof RedisConnectionError)) throw error;
      this._lines.result(action, "indeterminate", { reason: error.message });
      return;
    }
    if (receipt !== null) this._lines.result(action, "ok", { seq: receipt.seq });
    else this._lines.result(action, "refused", { reason: "finished" });
  }

  /** @param {Action} action */
  async _abort(action) {
    let result;
    try {
      result = await this._manager.abortJob(action.stream, action.user);
    } catch (error) {
      this._failed(action, error);
      return;
    }
    const aborted = result.outcome === "aborted";
    this._lines.result(action, "ok", {
      aborted,
      reason: result.outcome,
      generation: result.job?.generationId ?? null,
      seq: result.terminalSeq,
      data: aborted ? result.finalEvent : null,
    });
  }

  /** Answer a client's call that failed: refused if the stream is not the user's, maybe
   * done if Redis failed; anything else is a bug.
   * @param {Action} action @param {unknown} error */
  _failed(action, error) {
    if (error instanceof StreamAccessDenied) this._lines.result(action, "refused", { reason: "denied" });
    else if (error instanceof RedisConnectionError) this._lines.result(action, "indeterminate", { reason: error.message });
    else throw error;
  }

  /** @param {Action} action */
  async _attach(action) {
    /** @type {number[]} */
    let snapshot = [];
    let subscription;
    try {
      if (action.op === "resume") {
        const resumed = await this._manager.resume(action.stream, action.user);
        snapshot = resumed.state.foldedSeqs;
        subscription = resumed.subscription;
      } else {
        subscription = await this._manager.subscribe(action.stream, action.user);
      }
    } catch (error) {
      this._failed(action, error);
      return;
    }
    const session = { subscription, detached: false };
    this._sessions.set(action.session, session);
    this._lines.result(action, "ok", { generation: subscription.generation, first_seq: subscription.startSeq, snapshot: { seqs: snapshot } });
    let reason = "closed";
    for await (const event of subscription) {
      this._lines.timed("event", { session: action.session, event: eventJson(event) });
      if (event.kind === "done" || event.kind === "error") reason = "terminal";
    }
    if (session.detached && reason !== "terminal") reason = "detached";
    this._lines.timed("closed", { session: action.session, reason });
  }

  /** @param {Action} action */
  _detach(action) {
    const session = this._sessions.get(action.session);
    if (session === undefined) {
      this._lines.result(action, "refused", { reason: "absent" });
      return;
    }
    this._sessions.delete(action.session);
    session.detached = true;
    // The iteration ends at once; leaving the stream's channel goes on meanwhile.
    session.subscription.close().catch((error) => {
      if (!(error instanceof RedisConnectionError)) throw error;
    });
    this._lines.result(action, "ok");
  }
}

/** @param {unknown} raw @param {string} where @returns {Record<string, any>} */
function object(raw, where) {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ProtocolError(`${where}: not a JSON object`);
  return /** @type {Record<string, any>} */ (raw);
}

/** @param {string} text @param {string} where */
function parseLine(text, where) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`${where}: not JSON (${describe(error)}): ${text.slice(0, 120)}`);
  }
  const line = object(raw, where);
  if (typeof line.type !== "string") throw new ProtocolError(`${where}: field 'type' must be a string`);
  return line;
}

/** @param {unknown} raw @param {string} where @returns {Action} */
function parseAction(raw, where) {
  const a = object(raw, where);
  if (typeof a.id !== "string" || !OPS.has(a.op) || typeof a.stream !== "string") {
    throw new ProtocolError(`${where}: an action needs a string 'id', a known 'op' and a string 'stream'`);
  }
  /** @param {string} name */
  const text = (name) => (typeof a[name] === "string" ? a[name] : "");
  return {
    id: a.id,
    op: a.op,
    stream: a.stream,
    at: typeof a.at === "number" ? a.at : 0,
    user: text("user"),
    turn: text("turn"),
    data: a.data === undefined ? null : a.data,
    message: text("message"),
    session: text("session"),
  };
}

/** @param {Record<string, any>} init @returns {Partial<ReplicaSettings>} */
function replicaSettings(init) {
  const given = object(init.settings ?? {}, "init.settings");
  /** @type {Partial<ReplicaSettings>} */
  const settings = {};
  for (const [name, ours] of Object.entries(SETTINGS)) {
    if (typeof given[name] === "number") settings[ours] = given[name];
  }
  return settings;
}

/** @param {number} at seconds on the machine's monotonic clock (plan mode: no clock lines) */
function sleepUntil(at) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, (at - machineMonotonic()) * 1000)));
}

/** @param {NodeReplica} replica @param {Action[]} actions @param {number} startAt */
async function runPlan(replica, actions, startAt) {
  for (const action of [...actions].sort((a, b) => a.at - b.at)) {
    await sleepUntil(startAt + action.at);
    replica.perform(action);
  }
}

/** @param {string} name the implementation's name in the hello (the test folder's variants
 * name themselves) */
export async function main(name) {
  const lines = new Lines();
  lines.write("hello", { protocol: PROTOCOL, implementation: { name, version: VERSION }, capabilities: CAPABILITIES });
  const input = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const first = await input.next();
  if (first.done) throw new ProtocolError("stdin closed before init");
  const init = parseLine(first.value, "init");
  if (init.type !== "init") throw new ProtocolError(`the first line must be an init, not a ${JSON.stringify(init.type)}`);
  if (init.protocol !== PROTOCOL) throw new ProtocolError(`protocol version ${init.protocol} is not supported (this agent speaks ${PROTOCOL})`);
  const redis = object(init.redis, "init.redis");
  if (typeof redis.url !== "string") throw new ProtocolError("init.redis: field 'url' must be a string");
  const actions = (Array.isArray(init.actions) ? init.actions : []).map((a, i) => parseAction(a, `init.actions[${i}]`));
  const prefix = `${init.replica}.${init.incarnation ?? 1}-g`;
  let made = 0;
  const replica = await openReplica(redis.url, {
    cluster: redis.cluster === true,
    settings: replicaSettings(init),
    newId: () => `${prefix}${++made}`,
  });
  const node = new NodeReplica(replica.manager, lines);
  lines.write("ready");
  for (;;) {
    const next = await input.next();
    if (next.done) break;
    if (!next.value.trim()) continue;
    const message = parseLine(next.value, "harness");
    if (message.type === "start") {
      if (typeof message.at !== "number") throw new ProtocolError("start: field 'at' must be a number");
      void runPlan(node, actions, message.at);
    } else if (message.type === "do") {
      node.perform(parseAction(message.action, "do.action"));
    } else if (message.type === "clock") {
      if (typeof message.advance !== "number" || message.advance < 0) throw new ProtocolError("clock: field 'advance' must be a number of seconds, 0 or more");
      advanceClock(message.advance);
    } else if (message.type === "stop") {
      break;
    } else {
      throw new ProtocolError(`unknown message type ${JSON.stringify(message.type)} from the harness`);
    }
  }
  // Sessions still open are not closed: the process ends, the stream does not.
  await replica.close();
  await lines.flushed;
}

/** Run the agent and end the process with the protocol's exit status. */
export function run(name = "streamcheck-node") {
  main(name).then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`streamcheck-node agent: ${error instanceof Error ? error.stack : error}\n`);
      process.exit(error instanceof ProtocolError ? 2 : 1);
    },
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) run();
