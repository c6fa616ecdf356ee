// vercel resumable-stream 2.2.x: a resumer's ack that arrives just after the 1 s ack
// timeout fired (Redis slow, e.g. paused) is accepted -- resumeExistingStream resolves with
// a stream that delivers the backlog -- and then the timeout handler, which had not looked
// again, unsubscribes and errors that same stream with "Timeout waiting for ack": the reader
// loses everything after the backlog. Here the producer's reply is delayed 1.1 s and the
// resumer's UNSUBSCRIBE 0.5 s, as a slow Redis does; exit 1 if the handed-out stream errors.
//
//   REDIS_URL=redis://127.0.0.1:6379 node findings/resumable-stream-ack-timeout-race/repro.mjs
//   (from ports/peers; keys use a fresh prefix and are deleted)

import { randomUUID } from "node:crypto";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The `redis` client with one method slowed down.
function slow(client, method, ms) {
  return new Proxy(client, {
    get(target, key) {
      if (key === method) return async (...args) => (await pause(ms), target[method](...args));
      const value = target[key];
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function connected() {
  const client = createClient({ url });
  await client.connect();
  return client;
}

const clients = await Promise.all([connected(), connected(), connected(), connected()]);
const [producerPub, producerSub, readerPub, readerSub] = clients;
const keyPrefix = `repro-${randomUUID()}`;
const producer = createResumableStreamContext({
  keyPrefix,
  publisher: slow(producerPub, "publish", 1100), // the reply (and later chunks) come late
  subscriber: producerSub,
});
const reader = createResumableStreamContext({
  keyPrefix,
  publisher: readerPub,
  subscriber: slow(readerSub, "unsubscribe", 500),
});

let push;
const source = new ReadableStream({ start: (c) => (push = c) });
await producer.createNewResumableStream("race", () => source);
push.enqueue("hello ");
let outcome;
try {
  const stream = await reader.resumeExistingStream("race");
  const chunks = [];
  const items = stream.getReader();
  setTimeout(() => {
    push.enqueue("world");
    push.close();
  }, 300);
  try {
    for (;;) {
      const { value, done } = await items.read();
      if (done) break;
      chunks.push(value);
    }
    outcome = { resolved: true, text: chunks.join(""), error: null };
  } catch (error) {
    outcome = { resolved: true, text: chunks.join(""), error: String(error.message) };
  }
} catch (error) {
  outcome = { resolved: false, error: String(error.message) };
}
await pause(1500);
await readerPub.del(`${keyPrefix}:rs:sentinel:race`);
await Promise.all(clients.map((c) => c.quit()));
console.log(JSON.stringify(outcome));
const broken = outcome.resolved && outcome.error !== null;
console.log(broken ? "BUG: the stream handed out was then errored by the ack timeout" : "ok");
process.exit(broken ? 1 : 0);
