// How long the reference server takes to carry out the durable-streams-file-offset-regress
// plan's load without streamcheck: the server in a process of its own (as the harness runs
// it), three writers each appending 50 messages 30 ms apart through an IdempotentProducer
// (each append waits for the previous one, as the agent's generator does) and closing the
// stream, and twelve readers per stream that catch up and then follow it live over SSE.
// Prints the load average, each store's append latencies and when the writers and the
// readers finished; the file store syncs every append to disk (segment file and LMDB).
//
//   node findings/durable-streams-file-slow-appends/repro.mjs [file|memory]   (from ports/peers)

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DurableStream, IdempotentProducer, stream as read } from "@durable-streams/client";

const store = process.argv[2] ?? "file";
const STREAMS = 3;
const APPENDS = 50;
const READERS = 12;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now() / 1000;

const dir = mkdtempSync(join(tmpdir(), "ds-slow-appends-"));
const port = 20000 + Math.floor(Math.random() * 20000);
const serverScript = fileURLToPath(new URL("../../durable-streams-server.mjs", import.meta.url));
const server = spawn(
  process.execPath,
  [serverScript, "--port", String(port), ...(store === "file" ? ["--data-dir", dir] : [])],
  { stdio: ["ignore", "ignore", "pipe"] },
);
// The server says one line on stderr once it listens (its slow-append log lines follow).
await new Promise((resolve, reject) => {
  server.stderr.on("data", (data) => String(data).includes("durable streams server") && resolve());
  server.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
});
server.stderr.resume();

const base = `http://127.0.0.1:${port}/streams`;
const latencies = [];
const started = now();

async function writer(url) {
  const handle = await DurableStream.create({ url, contentType: "application/json" });
  const producer = new IdempotentProducer(handle, "writer", { lingerMs: 0 });
  for (let n = 0; n < APPENDS; n++) {
    const t = now();
    producer.append(JSON.stringify({ n }));
    await producer.flush();
    latencies.push(now() - t);
    await pause(30);
  }
  await producer.close(JSON.stringify({ n: "end" }));
  return now() - started;
}

async function reader(url, at) {
  await pause(at * 1000);
  const caught = await read({ url, offset: "-1", live: false });
  await caught.json();
  if (!caught.streamClosed) {
    const live = await read({ url, offset: caught.offset, live: "sse" });
    const items = live.jsonStream().getReader();
    while (!(await items.read()).done);
  }
  return now() - started;
}

const load = loadavg()[0].toFixed(1);
const writers = [];
const readers = [];
for (let s = 0; s < STREAMS; s++) {
  const url = `${base}/s${s}`;
  writers.push(writer(url));
  await pause(50);
  for (let k = 0; k < READERS; k++) readers.push(reader(url, 0.1 + (1.5 * k) / READERS));
}
const written = Math.max(...(await Promise.all(writers)));
const read_ = Math.max(...(await Promise.all(readers)));
server.kill("SIGTERM");
rmSync(dir, { recursive: true, force: true });
latencies.sort((a, b) => a - b);
const ms = (q) => Math.round(1000 * latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]);
console.log(
  `${store} store, load average ${load}: ${latencies.length} appends, latency p50 ${ms(0.5)} ms, ` +
    `p90 ${ms(0.9)} ms, max ${ms(1)} ms; writers done at ${written.toFixed(1)} s, ` +
    `readers closed at ${read_.toFixed(1)} s (the plan's own pace: 1.8 s)`,
);
