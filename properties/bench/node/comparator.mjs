// streamcheck bench's Node comparator (properties/bench/_node.py starts it).
//
// Two paths of Node 20 + ioredis, measured as streamcheck's throughput benchmark is:
// `streams` concurrent loops each awaiting `events` sends, one publisher connection and
// one subscriber connection; events received per second from the first send to the
// last delivery.
//   raw        an awaited PUBLISH of the envelope (no seq, no log);
//   librechat  LibreChat's per-event work on its hot path: one EVAL that INCRs the
//              stream's counter, EXPIREs it and PUBLISHes the envelope with the seq,
//              then an XADD of the chunk to the stream's log.
// Input: one JSON object as argv[2] (see `main`). Output: one JSON line per path on
// stdout: {"path", "events_per_s", "delivered", "expected", "seconds"}.
// Every key is under `prefix` and gets a TTL; the Python side deletes the prefix after.
import Redis from "ioredis";

// LibreChat's publish script shape: INCR + EXPIRE + PUBLISH of the event with its seq.
const LIBRECHAT_PUBLISH = `
local seq = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. seq)
return seq
`;

const DRAIN_TIMEOUT_MS = 10_000;

function parseArgs() {
  const text = process.argv[2];
  if (!text) throw new Error("usage: comparator.mjs '<json options>'");
  const o = JSON.parse(text);
  for (const name of ["url", "prefix", "token", "envelope"]) {
    if (typeof o[name] !== "string") throw new Error(`option ${name} must be a string`);
  }
  for (const name of ["streams", "events", "repetitions", "ttl"]) {
    if (!Number.isInteger(o[name]) || o[name] < 1) throw new Error(`option ${name} must be a positive integer`);
  }
  return o;
}

async function runOnce(opts, path, rep) {
  const pub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const sub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await pub.connect();
  await sub.connect();
  try {
    pub.defineCommand("librechatPublish", { numberOfKeys: 1, lua: LIBRECHAT_PUBLISH });
    const channels = [];
    for (let i = 0; i < opts.streams; i++) channels.push(`bench-${opts.token}-node-${path}-${rep}-${i}`);
    const expected = opts.streams * opts.events;
    let delivered = 0;
    let lastAt = 0;
    let resolveAll;
    const all = new Promise((resolve) => { resolveAll = resolve; });
    sub.on("message", () => {
      delivered += 1;
      lastAt = performance.now();
      if (delivered === expected) resolveAll();
    });
    await sub.subscribe(...channels);
    const started = performance.now();
    const loops = channels.map(async (channel, i) => {
      const seqKey = `${opts.prefix}node:${path}:${rep}:${i}:seq`;
      const logKey = `${opts.prefix}node:${path}:${rep}:${i}:chunks`;
      for (let n = 0; n < opts.events; n++) {
        if (path === "raw") {
          await pub.publish(channel, opts.envelope);
        } else {
          const seq = await pub.librechatPublish(seqKey, channel, opts.envelope, opts.ttl);
          await pub.xadd(logKey, "*", "seq", String(seq), "event", opts.envelope);
        }
      }
      if (path !== "raw") await pub.expire(logKey, opts.ttl);
    });
    await Promise.all(loops);
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, DRAIN_TIMEOUT_MS); });
    await Promise.race([all, timeout]);
    clearTimeout(timer);
    const seconds = ((delivered === expected ? lastAt : performance.now()) - started) / 1000;
    await sub.unsubscribe(...channels);
    return { path, events_per_s: delivered / seconds, delivered, expected, seconds };
  } finally {
    pub.disconnect();
    sub.disconnect();
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  const opts = parseArgs();
  for (const path of ["raw", "librechat"]) {
    const runs = [];
    for (let rep = 0; rep < opts.repetitions; rep++) runs.push(await runOnce(opts, path, rep));
    const best = median(runs.map((r) => r.events_per_s));
    const delivered = runs.reduce((s, r) => s + r.delivered, 0);
    const expected = runs.reduce((s, r) => s + r.expected, 0);
    const seconds = runs.reduce((s, r) => s + r.seconds, 0);
    process.stdout.write(JSON.stringify({ path, events_per_s: best, delivered, expected, seconds }) + "\n");
  }
}

main().catch((err) => {
  process.stderr.write(`comparator failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(3);
});
