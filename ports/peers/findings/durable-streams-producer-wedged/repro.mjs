// @durable-streams/client 0.2.x: one network error wedges an IdempotentProducer for good.
// The producer sends each batch once (its fetch has no retry, unlike the stream handle's);
// a batch that fails on the network consumes its sequence number, so every later batch is
// refused with 409 "Producer sequence gap" and close() fails too: the stream is never
// closed and its readers wait forever. Here the producer's fetch fails once, as a reset
// connection does; exit 1 if the producer is wedged.
//
//   node findings/durable-streams-producer-wedged/repro.mjs     (from ports/peers)

import { DurableStreamTestServer } from "@durable-streams/server";
import { DurableStream, IdempotentProducer, stream as read } from "@durable-streams/client";

const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1" });
await server.start();
const url = `${server.url}/streams/x`;
const handle = await DurableStream.create({ url, contentType: "application/json" });
let failNext = false;
const flaky = async (...args) => {
  if (failNext) {
    failNext = false;
    throw new TypeError("fetch failed (injected: connection reset)");
  }
  return fetch(...args);
};
const errors = [];
const producer = new IdempotentProducer(handle, "writer", {
  lingerMs: 0,
  fetch: flaky,
  onError: (error) => errors.push(String(error.message)),
});
const outcomes = [];
for (let n = 0; n < 4; n++) {
  if (n === 1) failNext = true;
  const before = errors.length;
  producer.append(JSON.stringify({ n }));
  await producer.flush();
  outcomes.push({ append: n, error: errors.slice(before).join("; ") || null });
}
let closed;
try {
  await producer.close(JSON.stringify({ n: "end" }));
  closed = "closed";
} catch (error) {
  closed = `close failed: ${error.message}`;
}
const stored = await (await read({ url, offset: "-1", live: false })).json();
await server.stop();
console.log(JSON.stringify({ outcomes, closed, stored }, null, 1));
const wedged = stored.length < 4;
console.log(wedged ? "BUG: one network error wedged the producer" : "ok");
process.exit(wedged ? 1 : 0);
