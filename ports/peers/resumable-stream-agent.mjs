// vercel `resumable-stream` behind streamcheck's replica protocol: one replica per
// process, with the `redis` client the library documents, on the Redis the harness names.
//
// A turn is the library's explicit API, as its README's route does it:
// createNewResumableStream(streamId, makeStream) with a source ReadableStream the
// generator feeds (emit enqueues the payload's text; done closes it); a reader is
// resumeExistingStream(streamId, skipCharacters). The library streams text, has no seqs,
// no abort and no error terminal; its end is the stream closing. What it says no to
// (`undefined`: no such stream, `null`: already done, "Timeout waiting for ack") is a
// refusal in its own words.

import { readFileSync } from "node:fs";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";
import { log, openTurn, reasonOf, result, runAgent, timed, within } from "./lib/agent.mjs";

const VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/resumable-stream/package.json", import.meta.url)),
).version;

// The library resolves a finished producer's cleanup (DONE sentinel, DONE to every
// listener) through waitUntil; a done is answered when it settles, or as indeterminate.
const DONE_ANSWER_MS = 5000;

// A Redis error inside the library's read loop (a publish that fails while the producer
// streams) is a promise rejection nobody handles; Node would end the process. A host such
// as a serverless runtime logs it: so does this replica, and keeps serving.
process.on("unhandledRejection", (error) => log("unhandled rejection:", reasonOf(error)));

class Turn {
  constructor() {
    this.closed = false;
    this.finished = null;
    this.demand = null; // resolves the library's pending pull
    this.wanted = null; // resolves a generator waiting for the next pull
    // Pull-driven: the library asks for the next chunk only after it has published the
    // previous one to every listener, so a slow publish slows the generator (no
    // unbounded queue in front of the library).
    this.source = new ReadableStream(
      {
        start: (controller) => {
          this.controller = controller;
        },
        pull: () =>
          new Promise((resolve) => {
            this.demand = resolve;
            this.wanted?.();
          }),
      },
      { highWaterMark: 0 },
    );
  }

  async pulled() {
    if (this.demand === null) await new Promise((resolve) => (this.wanted = resolve));
    this.wanted = null;
  }

  push(text) {
    this.controller.enqueue(text);
    this.release();
  }

  end() {
    this.closed = true;
    this.controller.close();
    this.release();
  }

  release() {
    const demand = this.demand;
    this.demand = null;
    demand?.();
  }
}

class Replica {
  constructor(publisher, subscriber, settings) {
    this.publisher = publisher;
    this.subscriber = subscriber;
    // The reader's watchdog re-reads the sentinel when a DONE message may have been lost;
    // it runs at the run's idle-probe interval (the library's default is 10 s).
    this.watchdogMs = Math.round((settings.idle_probe_s ?? 10) * 1000);
    this.turns = new Map();
    this.sessions = new Map();
  }

  context(waitUntil) {
    return createResumableStreamContext({
      publisher: this.publisher,
      subscriber: this.subscriber,
      waitUntil,
      doneWatchdogIntervalMs: this.watchdogMs,
    });
  }

  async create(action) {
    const turn = new Turn();
    try {
      const context = this.context((promise) => {
        turn.finished = promise;
      });
      const response = await context.createNewResumableStream(action.stream, () => turn.source);
      this.turns.set(action.stream, turn);
      // The original HTTP response: read to the end like a client that stays.
      drain(response);
      result(action, "ok");
    } catch (error) {
      result(action, "indeterminate", { reason: reasonOf(error) });
    }
  }

  async emit(action) {
    const turn = openTurn(this.turns, action);
    if (turn === undefined) return;
    await turn.pulled();
    turn.push(action.data.text);
    result(action, "ok");
  }

  async done(action) {
    const turn = openTurn(this.turns, action);
    if (turn === undefined) return;
    await turn.pulled();
    turn.end();
    const settled = await within(
      turn.finished.then(() => true),
      DONE_ANSWER_MS,
    );
    result(action, settled ? "ok" : "indeterminate", settled ? {} : { reason: "cleanup unsettled" });
  }

  async subscribe(action) {
    const opened = await this.open(action, 0);
    if (opened === undefined) return;
    result(action, "ok");
    this.follow(action.session, opened.getReader());
  }

  // A client that already holds the text so far (read here from a first connection, as a
  // page render would) reconnects at its character offset: the README's `resumeAt`.
  async resume(action) {
    const first = await this.open(action, 0);
    if (first === undefined) return;
    const reader = first.getReader();
    let value, done;
    try {
      ({ value, done } = await reader.read());
      await reader.cancel();
    } catch (error) {
      return result(action, "indeterminate", { reason: reasonOf(error) });
    }
    if (done) return result(action, "refused", { reason: "done" });
    const opened = await this.open(action, value.length);
    if (opened === undefined) return;
    result(action, "ok", { snapshot: { text: value } });
    this.follow(action.session, opened.getReader());
  }

  async open(action, skipCharacters) {
    let stream;
    try {
      stream = await this.context(undefined).resumeExistingStream(action.stream, skipCharacters);
    } catch (error) {
      const reason = reasonOf(error);
      const refused = reason.includes("Timeout waiting for ack");
      result(action, refused ? "refused" : "indeterminate", { reason });
      return undefined;
    }
    if (stream === undefined) result(action, "refused", { reason: "absent" });
    else if (stream === null) result(action, "refused", { reason: "done" });
    return stream ?? undefined;
  }

  follow(session, reader) {
    const state = { reader, detached: false };
    this.sessions.set(session, state);
    (async () => {
      let reason = "closed";
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            if (!state.detached) {
              timed("event", { session, event: { kind: "done" } });
              reason = "terminal";
            }
            break;
          }
          if (value !== "") timed("event", { session, event: { kind: "text", text: value } });
        }
      } catch (error) {
        log(`session ${session}:`, reasonOf(error));
      }
      timed("closed", { session, reason: state.detached ? "detached" : reason });
    })();
  }

  async detach(action) {
    const state = this.sessions.get(action.session);
    if (state === undefined) return result(action, "refused", { reason: "absent" });
    this.sessions.delete(action.session);
    state.detached = true;
    result(action, "ok");
    await state.reader.cancel().catch(() => {});
  }
}

async function drain(stream) {
  const reader = stream.getReader();
  try {
    while (!(await reader.read()).done);
  } catch (error) {
    log("producer response:", reasonOf(error));
  }
}

async function connected(url, role) {
  const client = createClient({ url });
  // node-redis needs an error listener, or a dropped connection ends the process.
  client.on("error", (error) => log(`redis ${role}:`, reasonOf(error)));
  await client.connect();
  return client;
}

await runAgent({
  name: "vercel-resumable-stream",
  version: VERSION,
  capabilities: {
    seqs: false,
    resume: "offset",
    abort: false,
    gap_events: false,
    error_terminals: false,
    turns_per_stream: 1,
    storage: "redis",
  },
  makeReplica: async (init) => {
    const publisher = await connected(init.redis.url, "publisher");
    const subscriber = await connected(init.redis.url, "subscriber");
    return new Replica(publisher, subscriber, init.settings ?? {});
  },
});
