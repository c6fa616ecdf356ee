// @durable-streams/client 0.2.x: an SSE reader whose connection is reset ends with an error
// ("terminated") and never reads the rest of the stream, although it knows its offset and the
// client has an SSE reconnect path; a long-poll reader survives the same cut (each poll is a
// new, retried request). The connection closed with a FIN mid-response ends the same way.
// Here a TCP proxy between the reader and the server resets the reader's connection once it
// is live; the writer then appends and closes the stream directly. Exit 1 if the reader
// missed the end.
//
//   node findings/durable-streams-sse-reset/repro.mjs [sse|long-poll] [reset|fin]
//   (from ports/peers; defaults: sse reset)

import net from "node:net";
import { DurableStreamTestServer } from "@durable-streams/server";
import { DurableStream, stream as read } from "@durable-streams/client";

const live = process.argv[2] ?? "sse";
const cut = process.argv[3] ?? "reset";
const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1" });
await server.start();
const sockets = new Set();
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(new URL(server.url).port), "127.0.0.1");
  sockets.add(client);
  client.pipe(upstream).pipe(client);
  const drop = () => {
    sockets.delete(client);
    client.destroy();
    upstream.destroy();
  };
  for (const end of [client, upstream]) end.on("error", drop).on("close", drop);
});
await new Promise((listening) => proxy.listen(0, "127.0.0.1", listening));
const direct = `${server.url}/streams/x`;
const throughProxy = `http://127.0.0.1:${proxy.address().port}/streams/x`;
const writer = await DurableStream.create({ url: direct, contentType: "application/json" });
await writer.append(JSON.stringify({ n: 0 }));

const response = await read({ url: throughProxy, offset: "-1", live });
response.closed.catch(() => {});
const received = [];
let ending = "still waiting after 5 s";
const reading = (async () => {
  const reader = response.jsonStream().getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return void (ending = "end of stream");
      received.push(value);
      // Once the reader is live at the tail, its connection goes (an RST, or a FIN).
      if (received.length === 1)
        setTimeout(() => {
          for (const s of sockets) cut === "reset" ? s.resetAndDestroy() : s.destroy();
        }, 200);
    }
  } catch (error) {
    ending = `error: ${error.message}`;
  }
})();
await new Promise((later) => setTimeout(later, 500));
await writer.append(JSON.stringify({ n: 1 }));
await writer.close({ body: JSON.stringify({ n: "final" }) });
await Promise.race([reading, new Promise((later) => setTimeout(later, 5000))]);
proxy.close();
for (const s of sockets) s.destroy();
await server.stop();
console.log(JSON.stringify({ live, cut, received, ending }));
const missed = received.length < 3;
console.log(missed ? "BUG: the reader missed the rest of the stream" : "ok");
process.exit(missed ? 1 : 0);
