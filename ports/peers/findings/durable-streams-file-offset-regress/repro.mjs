// A reader of @durable-streams/server's file-backed store is sometimes handed a message
// twice when it resumes from an offset while a writer appends: a catch-up read returns
// every message so far with the right Stream-Next-Offset; the live read from that offset
// is answered with no message and a Stream-Next-Offset *before* the one it asked from,
// so the client reads the last message again. The in-memory store never does it.
// Probabilistic (a few readers in a hundred on a 2-core machine); exit 1 if it shows,
// printing each request the reader made (offset asked -> status, next offset, items).
//
//   node findings/durable-streams-file-offset-regress/repro.mjs [memory]   (from ports/peers)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DurableStreamTestServer } from "@durable-streams/server";
import { DurableStream, IdempotentProducer, stream as read } from "@durable-streams/client";

const memory = process.argv[2] === "memory";
const dir = mkdtempSync(join(tmpdir(), "ds-file-store-"));
const server = new DurableStreamTestServer({
  port: 0,
  host: "127.0.0.1",
  ...(memory ? {} : { dataDir: dir }),
});
await server.start();
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Every request a reader makes, with what the server answered.
function recording(log) {
  return async (input, init) => {
    const reply = await fetch(input, init);
    const asked = new URL(String(input)).searchParams;
    log.push(
      `GET offset=${asked.get("offset")} live=${asked.get("live") ?? "-"} -> ${reply.status} ` +
        `next=${reply.headers.get("stream-next-offset")} body=${await reply.clone().text()}`,
    );
    return reply;
  };
}

async function reader(url) {
  const log = [];
  const caught = await read({ url, offset: "-1", live: false, fetch: recording(log) });
  const seen = (await caught.json()).map((item) => item.n);
  if (caught.streamClosed) return null;
  const live = await read({ url, offset: caught.offset, live: true, fetch: recording(log) });
  const items = live.jsonStream().getReader();
  for (;;) {
    const { value, done } = await items.read();
    if (done) return null;
    if (seen.includes(value.n)) {
      live.cancel();
      return { duplicate: value.n, resumedFrom: caught.offset, requests: log };
    }
    seen.push(value.n);
  }
}

const found = [];
let readers = 0;
for (let s = 0; s < 40 && found.length === 0; s++) {
  const url = `${server.url}/streams/s${s}`;
  const handle = await DurableStream.create({ url, contentType: "application/json" });
  const producer = new IdempotentProducer(handle, "writer", { lingerMs: 0 });
  const writing = (async () => {
    for (let n = 0; n < 40; n++) {
      producer.append(JSON.stringify({ n }));
      await producer.flush();
      await pause(5);
    }
    await producer.close(JSON.stringify({ n: "end" }));
  })();
  const reading = [];
  for (let k = 0; k < 5; k++) {
    await pause(20 + Math.random() * 40);
    readers++;
    reading.push(reader(url));
  }
  await writing;
  for (const outcome of await Promise.all(reading)) if (outcome) found.push(outcome);
}
await server.stop();
rmSync(dir, { recursive: true, force: true });
for (const outcome of found) console.log(JSON.stringify(outcome, null, 1));
console.log(`${memory ? "memory" : "file"} store: ${found.length} duplicate(s), ${readers} readers`);
process.exit(found.length > 0 ? 1 : 0);
