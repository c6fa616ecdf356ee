// Wiring one replica over Redis, as impl/_service.py's open_replica: two connections (one
// for commands, one for pub/sub), the bus, the job store, the transport and the manager.

import { RedisBus } from "./bus.js";
import { wallMs } from "./clock.js";
import { RedisJobStore } from "./jobstore.js";
import { Keys } from "./keys.js";
import { GenerationJobManager } from "./manager.js";
import { CLIENT_OPTIONS, connect, openClient } from "./redis.js";
import { EventTransport } from "./transport.js";
import { Redis } from "ioredis";

/**
 * Every timing and limit of a replica; the defaults are LibreChat's (spec §7).
 * @typedef {object} ReplicaSettings
 * @property {number} reorderTimeoutS wait this long for a gap to fill before reading the log
 * @property {number} reorderCapacity or read the log as soon as this many messages park
 * @property {number} idleProbeS a silent reader checks the log (then the job) after this long
 * @property {number} producerTimeoutS a running job unheard of for this long lost its producer
 * @property {number} heartbeatIntervalS
 * @property {number} cleanupIntervalS
 * @property {number} runningTtlS
 * @property {number} completedTtlS
 * @property {number} maxEventBytes
 * @property {number} earlyBufferMaxEvents
 * @property {number} earlyBufferMaxBytes
 */

/** @type {Readonly<ReplicaSettings>} */
export const DEFAULT_SETTINGS = Object.freeze({
  reorderTimeoutS: 0.5,
  reorderCapacity: 100,
  idleProbeS: 2.0,
  producerTimeoutS: 60.0,
  heartbeatIntervalS: 10.0,
  cleanupIntervalS: 60.0,
  runningTtlS: 1200,
  completedTtlS: 300,
  maxEventBytes: 1024 * 1024,
  earlyBufferMaxEvents: 5_000,
  earlyBufferMaxBytes: 8 * 1024 * 1024,
});

/**
 * @typedef {object} Replica
 * @property {GenerationJobManager} manager
 * @property {() => Promise<void>} close
 */

/**
 * Connect and start one replica. `crashed` is told of a bug found at run time (an
 * unexpected error in a stream's actor); by default it is rethrown, ending the process.
 * @param {string} url redis:// or rediss://
 * @param {{ cluster?: boolean, settings?: Partial<ReplicaSettings>, keys?: Keys, newId?: () => string, crashed?: (error: unknown) => void }} [options]
 * @returns {Promise<Replica>}
 */
export async function openReplica(url, { cluster = false, settings = {}, keys = new Keys(), newId, crashed = rethrow } = {}) {
  const s = { ...DEFAULT_SETTINGS, ...settings };
  const redis = openClient(url, cluster);
  redis.on("error", (/** @type {Error} */ error) => console.error(`redis: ${error.message}`));
  await connect(redis, url);
  // Pub/sub needs one node only: a PUBLISH on any node of a cluster reaches every node's
  // subscribers.
  const subscriber = new Redis(url, { ...CLIENT_OPTIONS });
  const bus = new RedisBus(redis, subscriber, { keys, logTtlS: s.runningTtlS });
  await bus.start();
  const nowMs = wallMs;
  const jobs = new RedisJobStore(redis, { keys, nowMs, runningTtlS: s.runningTtlS, completedTtlS: s.completedTtlS });
  const transport = new EventTransport(bus, jobs, {
    timings: {
      reorderTimeout: s.reorderTimeoutS,
      reorderCapacity: s.reorderCapacity,
      idleProbe: s.idleProbeS,
      producerTimeoutMs: Math.round(s.producerTimeoutS * 1000),
    },
    maxEventBytes: s.maxEventBytes,
    nowMs,
    crashed,
  });
  const manager = new GenerationJobManager({
    jobs,
    transport,
    bus,
    nowMs,
    newId,
    settings: {
      heartbeatIntervalS: s.heartbeatIntervalS,
      cleanupIntervalS: s.cleanupIntervalS,
      earlyBufferMaxEvents: s.earlyBufferMaxEvents,
      earlyBufferMaxBytes: s.earlyBufferMaxBytes,
    },
  });
  manager.start();
  return {
    manager,
    async close() {
      manager.stop();
      transport.destroy();
      bus.close();
      redis.disconnect();
    },
  };
}

/** @param {unknown} error */
function rethrow(error) {
  setImmediate(() => {
    throw error;
  });
}
