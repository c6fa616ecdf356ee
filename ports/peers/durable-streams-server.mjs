// The Durable Streams reference server as a process streamcheck's harness owns:
// `node durable-streams-server.mjs --port P [--data-dir D]` (in-memory store without a
// data directory, the file-backed store with one). It stops cleanly on SIGTERM.

import { parseArgs } from "node:util";
import { DurableStreamTestServer } from "@durable-streams/server";

const { values } = parseArgs({
  options: { port: { type: "string" }, "data-dir": { type: "string" } },
});
if (!values.port) {
  process.stderr.write("usage: durable-streams-server.mjs --port P [--data-dir D]\n");
  process.exit(2);
}
const server = new DurableStreamTestServer({
  port: Number(values.port),
  host: "127.0.0.1",
  ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
});
await server.start();
process.stderr.write(
  `durable streams server on ${server.url} (${values["data-dir"] ? "file" : "memory"} store)\n`,
);
process.on("SIGTERM", async () => {
  await server.stop();
  process.exit(0);
});
