// A long-poll reader waiting at the tail of a stream in @durable-streams/server's
// file-backed store misses the final message of an append-and-close, and is told the
// stream is closed at the offset before that message. The in-memory store (the same
// requests) delivers the message. Plain HTTP, as in PROTOCOL.md; exit 1 if the bug shows.
//
//   node findings/durable-streams-file-long-poll-close/repro.mjs      (from ports/peers)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DurableStreamTestServer } from "@durable-streams/server";

async function attempt(dataDir) {
  const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", ...(dataDir ? { dataDir } : {}) });
  await server.start();
  try {
    const url = `${server.url}/streams/x`;
    const json = { "content-type": "application/json" };
    await fetch(url, { method: "PUT", headers: json });
    const first = await fetch(url, { method: "POST", headers: json, body: JSON.stringify({ n: 0 }) });
    const tail = first.headers.get("stream-next-offset");
    // A reader long-polls at the tail ...
    const waiting = fetch(`${url}?offset=${tail}&live=long-poll`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // ... and the writer appends its final message and closes the stream in one request.
    const close = await fetch(url, {
      method: "POST",
      headers: { ...json, "stream-closed": "true" },
      body: JSON.stringify({ n: "final" }),
    });
    const reply = await waiting;
    return {
      store: dataDir ? "file" : "memory",
      closeStatus: close.status,
      finalOffset: close.headers.get("stream-next-offset"),
      longPollStatus: reply.status,
      longPollOffset: reply.headers.get("stream-next-offset"),
      longPollClosed: reply.headers.get("stream-closed"),
      longPollBody: await reply.text(),
    };
  } finally {
    await server.stop();
  }
}

const dir = mkdtempSync(join(tmpdir(), "ds-file-store-"));
let broken = false;
for (const dataDir of [undefined, dir]) {
  const seen = await attempt(dataDir);
  console.log(JSON.stringify(seen));
  broken ||= seen.longPollClosed === "true" && seen.longPollOffset !== seen.finalOffset;
}
rmSync(dir, { recursive: true, force: true });
console.log(broken ? "BUG: a long-poll reader was told 'closed' before the final offset" : "ok");
process.exit(broken ? 1 : 0);
