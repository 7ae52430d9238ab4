import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { connect as connectNats } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import { shardsCommand } from "../repl/commands.ts";
import type { ShardsView } from "../shards/coordinator.ts";
import { leaseEngine } from "../shards/create-leases.ts";
import { waitFor } from "./contracts/fixture.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";
import { startTcpProxy } from "./helpers/tcp-proxy.ts";

/*
 * Routing nodes (startNode, in this process) with ROUTING_DELIVERY_STRATEGY=sharded: the engine the
 * rule picks, readiness, the gauge and the REPL command, a refused shard count, and Redis cut off
 * behind a TCP proxy.
 */

const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
const admin = new Redis("redis://127.0.0.1:6379");
afterAll(async () => {
  await admin.quit();
});

const view = (n: InProcessNode) => n.node.broker.call<ShardsView>("shards.list");
const readyz = async (n: InProcessNode) => (await fetch(`${n.url}/readyz`)).status;
const gauge = async (n: InProcessNode) => Number(/^routing_shards_owned (\d+)$/m.exec(await (await fetch(`${n.url}/metrics`)).text())?.[1]);

describe("the lease engine rule", () => {
  it("Redis when the node has Redis, else NATS KV when it has NATS, else in-process for a single embedded node; refused otherwise", () => {
    expect(leaseEngine({ presence: "redis", store: "embedded", bus: "nats", signals: "nats" })).toBe("redis");
    expect(leaseEngine({ presence: "memory", store: "redis", bus: "embedded", signals: "local" })).toBe("redis");
    expect(leaseEngine({ presence: "memory", store: "embedded", bus: "nats", signals: "local" })).toBe("nats-kv");
    expect(leaseEngine({ presence: "memory", store: "firestore", bus: "pubsub", signals: "nats" })).toBe("nats-kv");
    expect(leaseEngine({ presence: "memory", store: "embedded", bus: "embedded", signals: "local" })).toBe("in-process");
    expect(() => leaseEngine({ presence: "memory", store: "firestore", bus: "pubsub", signals: "pubsub" })).toThrow(/needs an engine for the shard leases/);
  });
});

describe("a sharded routing node", () => {
  it("embedded: owns every shard in-process, is ready, reports the gauge and the REPL table", async () => {
    const n = await startInProcess({ ROUTING_DELIVERY_STRATEGY: "sharded", ROUTING_SHARD_COUNT: "16" });
    try {
      expect(await readyz(n)).toBe(200);
      const v = await view(n);
      expect(v).toMatchObject({ engine: "in-process", shardCount: 16, healthy: true });
      expect(v.owners.map((o) => o.shard)).toEqual(Array.from({ length: 16 }, (_, i) => i));
      expect(new Set(v.owners.map((o) => o.owner))).toEqual(new Set([n.node.config.instanceId]));
      expect(v.members).toEqual([{ id: n.node.config.instanceId, url: `http://127.0.0.1:${n.port}` }]);
      expect(await gauge(n)).toBe(16);
      const text = await shardsCommand(n.node.broker);
      expect(text.split("\n")[0]).toBe(`16 shards on in-process (as ${n.node.config.instanceId} reads it), 1 live node, every shard owned`);
      expect(text).toMatch(new RegExp(`^${n.node.config.instanceId}\\s+http://127\\.0\\.0\\.1:${n.port}\\s+16$`, "m"));
      expect(text).toMatch(new RegExp(`^\\s*15\\s+${n.node.config.instanceId}\\s+1$`, "m"));
    } finally {
      await n.stop();
    }
  });

  it("NATS KV when the node has NATS, and a SIGTERM-like shutdown releases its leases", async () => {
    const prefix = `test_${RUN}_kv`;
    const n = await startInProcess({ ROUTING_DELIVERY_STRATEGY: "sharded", ROUTING_SHARD_COUNT: "8", ROUTING_SIGNALS: "nats", ROUTING_NATS_PREFIX: prefix });
    try {
      const v = await view(n);
      expect(v.engine).toBe("nats-kv");
      expect(v.owners).toHaveLength(8);
      expect(await readyz(n)).toBe(200);
    } finally {
      await n.stop();
      const nc = await connectNats({ servers: "127.0.0.1:4222" });
      const kv = await nc.jetstream().views.kv(`${prefix}_shards`);
      const left: string[] = [];
      for await (const k of await kv.keys("lease.>")) left.push(k);
      expect(left).toEqual([]); // released at shutdown, not left to lapse
      await (await nc.jetstreamManager()).streams.delete(`KV_${prefix}_shards`);
      await nc.close();
    }
  });

  it("refuses to start with another shard count than the cluster's, saying so", async () => {
    const prefix = `test-${RUN}-count:`;
    const env = { ROUTING_DELIVERY_STRATEGY: "sharded", ROUTING_PRESENCE: "redis", ROUTING_REDIS_PREFIX: prefix };
    const first = await startInProcess({ ...env, ROUTING_SHARD_COUNT: "16" });
    try {
      await expect(startInProcess({ ...env, ROUTING_SHARD_COUNT: "32" })).rejects.toThrow(
        "ROUTING_SHARD_COUNT=32 differs from the cluster's 16 (recorded in redis)",
      );
      expect((await view(first)).owners).toHaveLength(16);
    } finally {
      await first.stop();
      await deleteRedisKeys(admin, prefix);
    }
  });

  const engines = [
    {
      name: "Redis",
      port: 6379,
      env: (port: number, run: string) => ({ ROUTING_PRESENCE: "redis", ROUTING_REDIS_URL: `redis://127.0.0.1:${port}`, ROUTING_REDIS_PREFIX: `test-${run}:` }),
      cleanUp: (run: string) => deleteRedisKeys(admin, `test-${run}:`),
    },
    {
      // Nothing else of this node needs NATS for readiness: the 503 is the coordinator's.
      name: "NATS",
      port: 4222,
      env: (port: number, run: string) => ({ ROUTING_SIGNALS: "nats", ROUTING_NATS_URL: `nats://127.0.0.1:${port}`, ROUTING_NATS_PREFIX: `test_${run}` }),
      cleanUp: async (run: string) => {
        const nc = await connectNats({ servers: "127.0.0.1:4222" });
        await (await nc.jetstreamManager()).streams.delete(`KV_test_${run}_shards`).catch(() => false);
        await nc.close();
      },
    },
  ];
  for (const engine of engines) {
    it(`${engine.name} unreachable: keeps shards while leases are valid, stops owning when they lapse, /readyz 503; recovers with higher epochs`, async () => {
      const run = `${RUN}cut${engine.name}`;
      const proxy = await startTcpProxy({ host: "127.0.0.1", port: engine.port });
      const n = await startInProcess({
        ROUTING_DELIVERY_STRATEGY: "sharded",
        ROUTING_SHARD_COUNT: "8",
        ROUTING_SHARD_LEASE_SECONDS: "2",
        ...engine.env(proxy.port, run),
      });
      try {
        const before = await view(n);
        expect(before.owners).toHaveLength(8);
        expect(await readyz(n)).toBe(200);
        await proxy.cut();
        await waitFor(async () => (await readyz(n)) === 503, "/readyz 503 with the engine cut off");
        // The leases lapse by the local clock: nothing owned, though nobody could say so.
        await waitFor(async () => (await gauge(n)) === 0, "every lease to lapse", 10_000);
        expect((await view(n)).healthy).toBe(false);
        await proxy.restore();
        await waitFor(async () => (await gauge(n)) === 8, "the shards owned again", 20_000);
        await waitFor(async () => (await readyz(n)) === 200, "/readyz 200 again", 10_000);
        // The view lists the leases as the engine said at the last poll: the one after the acquisitions.
        let after = await view(n);
        await waitFor(async () => (after = await view(n)).owners.length === 8, "the new leases in the coordinator's view", 5_000);
        expect(after.owners).toHaveLength(8);
        const epochBefore = new Map(before.owners.map((o) => [o.shard, o.epoch]));
        for (const o of after.owners) expect(o.epoch).toBeGreaterThan(epochBefore.get(o.shard) ?? Infinity);
      } finally {
        await n.stop();
        await proxy.close();
        await engine.cleanUp(run);
      }
    });
  }
});
