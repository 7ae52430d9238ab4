import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { connect as connectNats } from "nats";
import { afterAll } from "vitest";
import { createMemoryLeases } from "../shards/memory-leases.ts";
import { openNatsLeases } from "../shards/nats-leases.ts";
import { createRedisLeases } from "../shards/redis-leases.ts";
import type { ShardLeases } from "../shards/leases.ts";
import { describeShardLeasesContract } from "./contracts/shard-leases.contract.ts";
import { manualClock, sleep } from "./contracts/fixture.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/*
 * The shard lease engines against one suite: in-process (manual clock), Redis and NATS JetStream
 * KV on this machine's servers (real time; a short TTL). Every fixture uses names unique to this
 * run and removes what it created.
 */

const REDIS_URL = process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const NATS_URL = process.env.ROUTING_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
let names = 0;
const unique = () => `${RUN}x${++names}`;
const REAL_TTL_MS = 1_000;

const admin = new Redis(REDIS_URL);
afterAll(async () => {
  await admin.quit();
});

describeShardLeasesContract("in-process", 1_000, async () => {
  const clock = manualClock();
  const shared = createMemoryLeases({ ttlMs: 1_000, now: clock.now });
  return {
    open: async () => shared,
    pass: async (ms) => clock.advance(ms),
    now: clock.now,
    teardown: async () => {},
  };
});

describeShardLeasesContract("redis", REAL_TTL_MS, async () => {
  const prefix = `test-${unique()}:`;
  const opened: ShardLeases[] = [];
  return {
    open: async () => {
      const l = createRedisLeases({ redis: REDIS_URL, keyPrefix: prefix, ttlMs: REAL_TTL_MS });
      opened.push(l);
      return l;
    },
    pass: sleep,
    now: Date.now,
    teardown: async () => {
      await Promise.all(opened.map((l) => l.close()));
      await deleteRedisKeys(admin, prefix);
    },
  };
});

const natsFixture = (resyncMs?: number) => async () => {
  const bucket = `test_${unique()}_shards`;
  const opened: ShardLeases[] = [];
  return {
    open: async () => {
      const l = await openNatsLeases({ servers: NATS_URL, bucket, ttlMs: REAL_TTL_MS, resyncMs });
      opened.push(l);
      return l;
    },
    pass: sleep,
    now: Date.now,
    teardown: async () => {
      await Promise.all(opened.map((l) => l.close()));
      const nc = await connectNats({ servers: NATS_URL });
      await (await nc.jetstreamManager()).streams.delete(`KV_${bucket}`).catch(() => false);
      await nc.close();
    },
  };
};

describeShardLeasesContract("nats-kv", REAL_TTL_MS, natsFixture());
// The watched cache rebuilt at almost every read: the swap never loses a key.
describeShardLeasesContract("nats-kv, cache rebuilt every 50 ms", REAL_TTL_MS, natsFixture(50));
