// node-redis (the npm package `redis`, a development dependency of ports/node) against the
// RESP front, in RESP3: the connection handshake it sends (HELLO 3 with SETNAME, CLIENT
// SETINFO), then what a replica uses: scripts by SHA1 and by body, hashes, sets, the chunk
// log, and pub/sub whose subscribe resolves on the acknowledgement. Prints one JSON line.
//   node tests/node/node_redis_client.mjs <ports/node> <port>
import { createRequire } from "node:module";

const [portDir, port] = process.argv.slice(2);
const { createClient } = createRequire(`${portDir}/package.json`)("redis");

const client = createClient({ url: `redis://127.0.0.1:${port}`, RESP: 3, name: "streamcheck-node-redis" });
client.on("error", (error) => console.error(`redis: ${error.message}`));
await client.connect();
const subscriber = client.duplicate();
subscriber.on("error", (error) => console.error(`redis subscriber: ${error.message}`));
await subscriber.connect();

const sha = await client.scriptLoad("return redis.call('INCR', KEYS[1])");
const evalsha = await client.evalSha(sha, { keys: ["nr:{s}:seq"] });
const evaluated = await client.eval("return {KEYS[1], ARGV[1]}", { keys: ["nr:{s}:k"], arguments: ["v"] });
await client.hSet("nr:{s}:job", { status: "running", generationId: "g1" });
const hash = await client.hGetAll("nr:{s}:job");
// Without node-redis's transforms: a RESP3 map arrives as an object, a RESP2 reply as a list.
const rawHash = await client.sendCommand(["HGETALL", "nr:{s}:job"]);
await client.sAdd("nr:running", "s");
const set = await client.sMembers("nr:running");
await client.xAdd("nr:{s}:chunks", "1-1", { e: "x" });
const log = await client.xRange("nr:{s}:chunks", "-", "+");

/** @type {(message: string) => void} */
let received = () => {};
const message = new Promise((resolve) => (received = resolve));
await subscriber.subscribe("nr:{s}:events", (text) => received(text));
const receivers = await client.publish("nr:{s}:events", "hello");
const delivered = await message;
await subscriber.unsubscribe("nr:{s}:events");

console.log(JSON.stringify({ evalsha, evaluated, hash, rawHashIsMap: !Array.isArray(rawHash), set, log, receivers, delivered }));
subscriber.destroy();
client.destroy();
