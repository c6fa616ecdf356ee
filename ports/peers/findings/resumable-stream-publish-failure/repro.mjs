// vercel resumable-stream 2.2.x: one failed PUBLISH (a Redis connection reset) is never
// handled by the library. Two cases, each with a publisher whose next PUBLISH fails once:
//
//   stall:   a chunk's publish to a listener fails -> the producer's read loop stops for
//            good: no further chunk, no DONE, the sentinel stays "1" (24 h TTL), every
//            reader waits forever (and the rejection is unhandled: Node ends the process
//            unless the host catches it).
//   backlog: the reply to a resumer's request (the text so far) fails -> the resumer
//            takes the next live chunk for the backlog and silently misses the prefix.
//
//   REDIS_URL=redis://127.0.0.1:6379 node findings/resumable-stream-publish-failure/repro.mjs
//   (from ports/peers; keys use a fresh prefix and are deleted; exit 1 if either case shows)

import { randomUUID } from "node:crypto";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const unhandled = [];
process.on("unhandledRejection", (error) => unhandled.push(String(error?.message ?? error)));
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function clients() {
  const publisher = createClient({ url });
  const subscriber = createClient({ url });
  await Promise.all([publisher.connect(), subscriber.connect()]);
  let failNext = false;
  // The `redis` client, except that the next PUBLISH fails as a reset connection does.
  const flaky = new Proxy(publisher, {
    get(target, key) {
      if (key === "publish") {
        return async (...args) => {
          if (failNext) {
            failNext = false;
            throw new Error("read ECONNRESET (injected)");
          }
          return target.publish(...args);
        };
      }
      const value = target[key];
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { publisher: flaky, subscriber, failOnce: () => (failNext = true), all: [publisher, subscriber] };
}

function source() {
  let controller;
  const stream = new ReadableStream({ start: (c) => (controller = c) });
  return { stream, push: (text) => controller.enqueue(text), end: () => controller.close() };
}

async function readAll(stream, ms) {
  const reader = stream.getReader();
  let text = "";
  let ended = false;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const next = await Promise.race([reader.read(), pause(deadline - Date.now()).then(() => null)]);
    if (next === null) break;
    if (next.done) {
      ended = true;
      break;
    }
    text += next.value;
  }
  return { text, ended };
}

async function stall() {
  const redis = await clients();
  const keyPrefix = `repro-${randomUUID()}`;
  const context = createResumableStreamContext({ ...redis, keyPrefix });
  const id = "stall";
  const producer = source();
  await context.createNewResumableStream(id, () => producer.stream);
  producer.push("a");
  const reader = await context.resumeExistingStream(id);
  await pause(100);
  redis.failOnce();
  producer.push("b");
  producer.push("c");
  producer.end();
  const seen = await readAll(reader, 3000);
  await redis.publisher.del(`${keyPrefix}:rs:sentinel:${id}`);
  await Promise.all(redis.all.map((c) => c.quit()));
  console.log(JSON.stringify({ case: "stall", reader: seen, expected: { text: "abc", ended: true } }));
  return seen.text !== "abc" || !seen.ended;
}

async function backlog() {
  // Two replicas: the producer's (whose next PUBLISH fails) and the resumer's.
  const redis = await clients();
  const other = await clients();
  const keyPrefix = `repro-${randomUUID()}`;
  const context = createResumableStreamContext({ ...redis, keyPrefix });
  const elsewhere = createResumableStreamContext({ ...other, keyPrefix });
  const id = "backlog";
  const producer = source();
  await context.createNewResumableStream(id, () => producer.stream);
  producer.push("hello ");
  await pause(100);
  redis.failOnce(); // the producer's reply with the text so far
  const resumed = elsewhere.resumeExistingStream(id);
  await pause(200);
  producer.push("world");
  producer.end();
  const seen = await readAll(await resumed, 3000);
  await redis.publisher.del(`${keyPrefix}:rs:sentinel:${id}`);
  await Promise.all([...redis.all, ...other.all].map((c) => c.quit()));
  console.log(JSON.stringify({ case: "backlog", reader: seen, expected: { text: "hello world", ended: true } }));
  return seen.text !== "hello world";
}

const broken = [await stall(), await backlog()];
console.log(JSON.stringify({ unhandledRejections: unhandled }));
process.exit(broken.some(Boolean) ? 1 : 0);
