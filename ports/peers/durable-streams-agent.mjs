// Durable Streams behind streamcheck's replica protocol: one replica per process, a
// client of the reference server (@durable-streams/server) that the harness starts from
// this agent's hello and restarts, freezes and cuts off as faults.
//
// `node durable-streams-agent.mjs [--store memory|file] [--live long-poll|sse]`
// (long-poll is what the client picks for `live: true`).
//
// A turn is one JSON-mode stream (`application/json`: the server keeps message
// boundaries). Its generator is an IdempotentProducer (the client's exactly-once writer:
// it retries, the server drops duplicates): each emit appends one message and waits for
// the flush; done and error append their final message and close the stream in one call
// (closure is the protocol's only end of stream). Messages are typed envelopes, as an AI
// SDK stream's parts are: {"kind": "chunk", "data"}, {"kind": "done", "data"},
// {"kind": "error", "message"}. A reader is the client's stream() from offset -1, live
// (long-poll or SSE); a resume is a catch-up read (live: false) to the current tail, then a live read
// from the offset it returned. Durable Streams has no sequence numbers a reader sees (its
// offsets are opaque) and no abort.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  DurableStream,
  IdempotentProducer,
  StreamClosedError,
  stream as read,
} from "@durable-streams/client";
import { log, openTurn, reasonOf, result, runAgent, timed } from "./lib/agent.mjs";

const { values } = parseArgs({
  options: {
    store: { type: "string", default: "memory" },
    live: { type: "string", default: "long-poll" },
  },
});
if (!["memory", "file"].includes(values.store) || !["long-poll", "sse"].includes(values.live)) {
  log("usage: durable-streams-agent.mjs [--store memory|file] [--live long-poll|sse]");
  process.exit(2);
}
const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url)))
    .version;
const LIVE = values.live;
const SERVER = fileURLToPath(new URL("./durable-streams-server.mjs", import.meta.url));

class Replica {
  constructor(base, init) {
    this.base = base;
    this.producerPrefix = `${init.replica}.${init.incarnation ?? 1}`;
    this.turns = new Map();
    this.sessions = new Map();
  }

  url(stream) {
    return `${this.base}/streams/${encodeURIComponent(stream)}`;
  }

  async create(action) {
    try {
      const handle = await DurableStream.create({
        url: this.url(action.stream),
        contentType: "application/json",
      });
      const errors = [];
      const producer = new IdempotentProducer(handle, `${this.producerPrefix}-${action.stream}`, {
        autoClaim: true,
        lingerMs: 0,
        onError: (error) => errors.push(error),
      });
      this.turns.set(action.stream, { producer, errors, closing: false, closed: false });
      result(action, "ok");
    } catch (error) {
      result(action, "indeterminate", { reason: reasonOf(error) });
    }
  }

  async emit(action) {
    const turn = openTurn(this.turns, action);
    if (turn === undefined) return;
    const before = turn.errors.length;
    try {
      turn.producer.append(JSON.stringify({ kind: "chunk", data: action.data }));
      await turn.producer.flush();
    } catch (error) {
      return this.failed(action, error);
    }
    if (turn.errors.length > before) return this.failed(action, turn.errors.at(-1));
    result(action, "ok");
  }

  done(action) {
    return this.close(action, { kind: "done", data: action.data });
  }

  error(action) {
    return this.close(action, { kind: "error", message: action.message });
  }

  async close(action, final) {
    const turn = openTurn(this.turns, action);
    if (turn === undefined) return;
    // After a close that failed, the producer's close() is a retry of that close, with
    // its first final message (idempotent by the producer's sequence number): this end's
    // own payload is never sent, so it is refused once the retry has ended the turn.
    const retry = turn.closing;
    turn.closing = true;
    try {
      await turn.producer.close(JSON.stringify(final));
      turn.closed = true;
      result(action, retry ? "refused" : "ok", retry ? { reason: "finished" } : {});
    } catch (error) {
      this.failed(action, error);
    }
  }

  failed(action, error) {
    if (error instanceof StreamClosedError) {
      return result(action, "refused", { reason: "closed" });
    }
    if (error?.status === 404) return result(action, "refused", { reason: "not found" });
    result(action, "indeterminate", { reason: reasonOf(error) });
  }

  async subscribe(action) {
    const session = this.open(action);
    let response;
    try {
      response = await read({ url: this.url(action.stream), offset: "-1", live: LIVE });
    } catch (error) {
      return this.refuse(action, error);
    }
    result(action, "ok");
    session.opened = true;
    if (session.detached) {
      response.cancel();
      return this.closed(session);
    }
    this.follow(session, response);
  }

  async resume(action) {
    const session = this.open(action);
    let items, offset, closed;
    try {
      const caught = await read({ url: this.url(action.stream), offset: "-1", live: false });
      caught.closed.catch(() => {});
      items = await caught.json();
      offset = caught.offset;
      closed = caught.streamClosed;
    } catch (error) {
      return this.refuse(action, error);
    }
    const chunks = items.filter((item) => item.kind === "chunk");
    const text = chunks.map((item) => item.data.text).join("");
    result(action, "ok", { snapshot: { text } });
    session.opened = true;
    for (const item of items.filter((item) => item.kind !== "chunk")) this.report(session, item);
    if (closed || session.detached) return this.closed(session);
    try {
      this.follow(session, await read({ url: this.url(action.stream), offset, live: LIVE }));
    } catch (error) {
      log(`session ${session.name}: live read after catch-up:`, reasonOf(error));
      this.closed(session);
    }
  }

  open(action) {
    // A client may leave while its attach is under way: it is closed once it opened.
    const session = { name: action.session, opened: false, detached: false, terminal: false };
    this.sessions.set(action.session, session);
    return session;
  }

  refuse(action, error) {
    this.sessions.delete(action.session);
    const reason = error?.status === 404 ? "not found" : reasonOf(error);
    result(action, error?.status === 404 ? "refused" : "indeterminate", { reason });
  }

  async follow(session, response) {
    session.response = response;
    // The reader below sees the session's failure; `closed` rejects with it too.
    response.closed.catch(() => {});
    if (session.detached) return response.cancel();
    // Items in order, then the end: the stream ends when the server says it is closed
    // (or the session fails or is cancelled).
    const reader = response.jsonStream().getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.report(session, value);
      }
    } catch (error) {
      log(`session ${session.name}:`, reasonOf(error));
    }
    this.closed(session);
  }

  report(session, item) {
    if (session.detached) return;
    const event =
      item.kind === "error"
        ? { kind: "error", message: item.message }
        : { kind: item.kind, data: item.data };
    if (item.kind !== "chunk") session.terminal = true;
    timed("event", { session: session.name, event });
  }

  closed(session) {
    if (session.reported) return;
    session.reported = true;
    const reason = session.detached ? "detached" : session.terminal ? "terminal" : "closed";
    timed("closed", { session: session.name, reason });
  }

  async detach(action) {
    const session = this.sessions.get(action.session);
    if (session === undefined) return result(action, "refused", { reason: "absent" });
    this.sessions.delete(action.session);
    session.detached = true;
    result(action, "ok");
    session.response?.cancel();
    if (session.opened) this.closed(session);
  }
}

await runAgent({
  name: `durable-streams-${values.store}-${values.live}`,
  version: `server ${version("@durable-streams/server")}, client ${version("@durable-streams/client")}`,
  capabilities: {
    seqs: false,
    resume: "offset",
    abort: false,
    gap_events: false,
    error_terminals: true,
    turns_per_stream: 1,
    storage: "own",
  },
  server: {
    command: [
      process.execPath,
      SERVER,
      "--port",
      "{port}",
      ...(values.store === "file" ? ["--data-dir", "{dir}"] : []),
    ],
  },
  makeReplica: async (init) => new Replica(init.server.url, init),
});
