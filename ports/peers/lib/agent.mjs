// The agent side of streamcheck's replica protocol (docs/port-protocol.md), shared by the
// peers' agents: hello, init, ready, the plan on the monotonic clock, and one line per
// report on stdout. The peer-specific part is a replica object with a method per op it
// offers (create, emit, done, error, abort, subscribe, resume, detach); the harness's other
// ops are refused as unsupported.

import { createInterface } from "node:readline";

/** Seconds on CLOCK_MONOTONIC, the clock every process of a run reads. */
export function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** One JSON line on stdout per call (on Linux a pipe write is synchronous: nothing is
 * held back, so a SIGKILL loses no complete line). */
export function say(type, fields = {}) {
  process.stdout.write(JSON.stringify({ type, ...fields }) + "\n");
}

export function timed(type, fields = {}) {
  say(type, { t: now(), ...fields });
}

export function result(action, outcome, fields = {}) {
  timed("result", { action: action.id, outcome, ...fields });
}

export function log(...words) {
  process.stderr.write(words.map(String).join(" ") + "\n");
}

/** The open turn of `action.stream` in `turns`; undefined once the refusal is answered
 * (no turn was created here, or it has ended). */
export function openTurn(turns, action) {
  const turn = turns.get(action.stream);
  if (turn === undefined) result(action, "refused", { reason: "absent" });
  else if (turn.closed) result(action, "refused", { reason: "finished" });
  else return turn;
  return undefined;
}

/** Why a call failed, in a few words, for a result's reason. */
export function reasonOf(error) {
  return String(error?.message ?? error).slice(0, 200);
}

/**
 * Runs an agent: `makeReplica(init)` connects and returns the replica. A stream's
 * create, emit, done and error run one at a time, in order (an LLM's token loop);
 * everything else runs at once.
 */
export async function runAgent({ name, version, capabilities, server, makeReplica }) {
  say("hello", {
    protocol: 1,
    implementation: { name, version },
    capabilities,
    ...(server ? { server } : {}),
  });
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let replica = null;
  const generators = new Map();
  // An op the replica has no method for is one the library does not offer.
  const call = async (action) =>
    typeof replica[action.op] === "function"
      ? replica[action.op](action)
      : result(action, "refused", { reason: "unsupported" });
  const perform = (action) => {
    if (["create", "emit", "done", "error"].includes(action.op)) {
      const previous = generators.get(action.stream) ?? Promise.resolve();
      const next = previous.then(() => {
        timed("invoked", { action: action.id });
        return call(action);
      });
      generators.set(
        action.stream,
        next.catch((error) => timed("error", { message: `${action.op}: ${reasonOf(error)}` })),
      );
    } else {
      call(action).catch((error) =>
        timed("error", { message: `${action.op}: ${reasonOf(error)}` }),
      );
    }
  };
  let init = null;
  for await (const text of lines) {
    if (!text.trim()) continue;
    const message = JSON.parse(text);
    if (init === null) {
      if (message.type !== "init") throw new Error(`expected init, got ${message.type}`);
      init = message;
      replica = await makeReplica(init);
      say("ready");
    } else if (message.type === "start") {
      runPlan(init.actions, message.at, perform);
    } else if (message.type === "do") {
      perform(message.action);
    } else if (message.type === "stop") {
      process.exit(0);
    } else {
      throw new Error(`unknown message type ${message.type} from the harness`);
    }
  }
  process.exit(0);
}

/** Each action at its time after `startAt`, in plan order. */
async function runPlan(actions, startAt, perform) {
  for (const action of [...actions].sort((a, b) => a.at - b.at)) {
    const delay = (startAt + action.at - now()) * 1000;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    perform(action);
  }
}

/** A promise that settles with `promise`, or with `undefined` after `ms`. */
export function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
