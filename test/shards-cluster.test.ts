import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { ServiceBroker } from "moleculer";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createLifecycle } from "../platform/lifecycle.ts";
import { createShardsService } from "../services/shards.service.ts";
import type { ShardsView } from "../shards/coordinator.ts";
import { createShardCoordinator, type ShardCoordinator } from "../shards/coordinator.ts";
import { createRedisLeases } from "../shards/redis-leases.ts";
import { rendezvousAssign } from "../shards/rendezvous.ts";
import { waitFor } from "./contracts/fixture.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/*
 * Several coordinators in this process, each with its own Redis connection, on real Redis: what
 * rebalancing does when a node dies without releasing (kill -9 leaves exactly that: leases and a
 * membership record that only time removes), drains, or joins.
 */

const REDIS_URL = process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
const TTL_MS = 1_000;
const SHARDS = 96;
let runs = 0;
const admin = new Redis(REDIS_URL);

interface Held {
  readonly node: string;
  readonly shard: number;
  readonly epoch: number;
  readonly from: number;
  to?: number;
}

/** A cluster of coordinators sharing one key prefix, with a log of every ownership each node acted on. */
function cluster() {
  const prefix = `test-${RUN}-${++runs}:`;
  const nodes = new Map<string, ShardCoordinator>();
  const log: Held[] = [];
  const start = async (id: string, shardCount = SHARDS) => {
    const c = createShardCoordinator({
      leases: createRedisLeases({ redis: REDIS_URL, keyPrefix: prefix, ttlMs: TTL_MS }),
      shardCount,
      nodeId: id,
      url: () => `http://${id}.test:8080`,
    });
    c.onChange((shard, owned) => {
      if (owned) log.push({ node: id, shard, epoch: c.ownerOf(shard)?.epoch ?? -1, from: Date.now() });
      else {
        const open = log.find((h) => h.node === id && h.shard === shard && h.to === undefined);
        if (open) open.to = Date.now();
      }
    });
    await c.start();
    nodes.set(id, c);
    return c;
  };
  /** kill -9: no release, no leave; the node stops acting at once (its process is gone). */
  const kill = (id: string) => {
    nodes.get(id)?.halt();
    const at = Date.now();
    for (const h of log) if (h.node === id && h.to === undefined) h.to = at;
    nodes.delete(id);
  };
  const ownership = () => {
    const owners = new Map<number, string[]>();
    for (const [id, c] of nodes) for (const s of c.ownedShards()) owners.set(s, [...(owners.get(s) ?? []), id]);
    return owners;
  };
  /** Every shard owned by exactly one node: the one rendezvous hashing names among the live nodes. */
  const settled = () => {
    const o = ownership();
    const expected = rendezvousAssign([...nodes.keys()], SHARDS);
    return o.size === SHARDS && [...o].every(([shard, ids]) => ids.length === 1 && ids[0] === expected[shard]);
  };
  const counts = () => new Map([...nodes].map(([id, c]) => [id, c.ownedShards().length]));
  const teardown = async () => {
    for (const c of nodes.values()) c.halt();
    await Promise.all([...nodes.values()].map((c) => c.close()));
    await deleteRedisKeys(admin, prefix);
  };
  return { prefix, nodes, log, start, kill, ownership, settled, counts, teardown };
}

/** No shard was ever acted on by two nodes at once, and no (shard, epoch) by two nodes; epochs rise in time. */
function expectFenced(log: readonly Held[]) {
  const byShard = new Map<number, Held[]>();
  for (const h of log) byShard.set(h.shard, [...(byShard.get(h.shard) ?? []), h]);
  for (const [shard, held] of byShard) {
    const sorted = [...held].sort((a, b) => a.from - b.from);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      const next = sorted[i];
      expect(prev.to, `shard ${shard}: ${prev.node} still acting when ${next.node} began`).toBeDefined();
      expect(next.from, `shard ${shard}: overlap`).toBeGreaterThanOrEqual(prev.to ?? Infinity);
      expect(next.epoch, `shard ${shard}: epochs rise`).toBeGreaterThan(prev.epoch);
    }
  }
}

function expectBalanced(counts: Map<string, number>) {
  const mean = SHARDS / counts.size;
  for (const [id, n] of counts) {
    expect(n, id).toBeGreaterThanOrEqual(Math.floor(mean * 0.5));
    expect(n, id).toBeLessThanOrEqual(Math.ceil(mean * 1.5));
  }
}

describe("shard coordinators on Redis leases", () => {
  let c: ReturnType<typeof cluster> | undefined;
  afterEach(async () => {
    await c?.teardown();
    c = undefined;
  });
  afterAll(async () => {
    await admin.quit();
  });

  it("three nodes own every shard once, as rendezvous hashing says; a killed node's shards are owned again within the lease + 1 s", async () => {
    c = cluster();
    await Promise.all(["node-a", "node-b", "node-c"].map((id) => c?.start(id)));
    await waitFor(() => c?.settled() ?? false, "every shard owned by exactly one node", 10_000);
    const expected = rendezvousAssign(["node-a", "node-b", "node-c"], SHARDS);
    for (const [shard, [owner]] of c.ownership()) expect(owner).toBe(expected[shard]);
    expectBalanced(c.counts());
    const onC = c.nodes.get("node-c")?.ownedShards() ?? [];
    const epochsOnC = new Map(onC.map((s) => [s, c?.nodes.get("node-c")?.ownerOf(s)?.epoch ?? 0]));

    c.kill("node-c");
    const killedAt = Date.now();
    await waitFor(() => c?.settled() ?? false, "node-c's shards owned again", TTL_MS + 1_000);
    const took = Date.now() - killedAt;
    expect(took).toBeLessThanOrEqual(TTL_MS + 1_000);
    for (const s of onC) {
      const now = [...c.nodes.values()].find((n) => n.ownsShard(s))?.ownerOf(s);
      expect(now?.owner).not.toBe("node-c");
      expect(now?.epoch).toBeGreaterThan(epochsOnC.get(s) ?? Infinity);
    }
    // Only node-c's shards moved.
    for (const [shard, [owner]] of c.ownership()) if (expected[shard] !== "node-c") expect(owner).toBe(expected[shard]);
    expectBalanced(c.counts());
    expectFenced(c.log);
  });

  it("a draining node hands its shards over at once: released, not left to lapse", async () => {
    c = cluster();
    const a = await c.start("node-a");
    const b = await c.start("node-b");
    await waitFor(() => c?.settled() ?? false, "every shard owned by exactly one node", 10_000);
    const onB = b.ownedShards();
    expect(onB.length).toBeGreaterThan(0);
    const draining = b.drain();
    expect(b.ownedShards()).toEqual([]); // stops acting as owner before anything is sent
    await draining;
    // Every lease of node-b is gone now: released, well before any could lapse.
    const leases = createRedisLeases({ redis: REDIS_URL, keyPrefix: c.prefix, ttlMs: TTL_MS });
    expect((await leases.owners()).filter((o) => o.owner === "node-b")).toEqual([]);
    expect((await leases.members()).map((m) => m.id)).toEqual(["node-a"]);
    await leases.close();
    c.nodes.delete("node-b");
    await waitFor(() => onB.every((s) => a.ownsShard(s)), "node-a to take node-b's shards");
    expectFenced(c.log);
  });

  it("a joining node takes only the shards rendezvous hashing gives it; nothing moves between the others", async () => {
    c = cluster();
    await c.start("node-a");
    await c.start("node-b");
    await waitFor(() => c?.settled() ?? false, "two nodes settled", 10_000);
    expect(c.counts().get("node-a")).toBeLessThan(SHARDS);
    const before = new Map([...c.ownership()].map(([s, [o]]) => [s, o]));
    await c.start("node-d");
    const after = rendezvousAssign(["node-a", "node-b", "node-d"], SHARDS);
    await waitFor(() => c?.settled() ?? false, "the joiner's shards handed over", 10_000);
    for (const [shard, [owner]] of c.ownership()) expect(owner).toBe(after[shard]);
    for (const [shard, [owner]] of c.ownership()) if (owner !== "node-d") expect(owner).toBe(before.get(shard));
    expectBalanced(c.counts());
    expectFenced(c.log);
  });

  it("a node with another shard count refuses to start, naming both counts", async () => {
    c = cluster();
    await c.start("node-a");
    await expect(c.start("node-x", 32)).rejects.toThrow(`ROUTING_SHARD_COUNT=32 differs from the cluster's ${SHARDS} (recorded in redis)`);
  });

  it("hosted by the shards service on brokers: the drain of broker.stop() hands the shards over, `shards.list` shows the cluster", async () => {
    const prefix = `test-${RUN}-svc:`;
    const start = async (id: string) => {
      const lifecycle = createLifecycle();
      const broker = new ServiceBroker({ nodeID: id, logger: false, middlewares: [lifecycle.middleware], skipProcessEventRegistration: true });
      const svc = createShardsService({
        leases: createRedisLeases({ redis: REDIS_URL, keyPrefix: prefix, ttlMs: TTL_MS }),
        shardCount: SHARDS,
        nodeId: id,
        url: () => `http://${id}.test:8080`,
      });
      broker.createService(lifecycle.part(svc.schema));
      await broker.start();
      return { broker, svc };
    };
    const a = await start("svc-a");
    const b = await start("svc-b");
    try {
      const expected = rendezvousAssign(["svc-a", "svc-b"], SHARDS);
      const mine = (id: string) => expected.flatMap((o, s) => (o === id ? [s] : []));
      await waitFor(
        () => a.svc.directory.ownedShards().join() === mine("svc-a").join() && b.svc.directory.ownedShards().join() === mine("svc-b").join(),
        "both brokers settled",
        10_000,
      );
      expect(a.svc.ready()).toBe(true);
      const v = await a.broker.call<ShardsView>("shards.list");
      expect(v.members.map((m) => m.id)).toEqual(["svc-a", "svc-b"]);
      expect(v.owners).toHaveLength(SHARDS);
      await b.broker.stop();
      expect(b.svc.directory.ownedShards()).toEqual([]);
      const after = await a.broker.call<ShardsView>("shards.list");
      expect(after.owners.filter((o) => o.owner === "svc-b")).toEqual([]); // released at the drain, not lapsed
      expect(after.members.map((m) => m.id)).toEqual(["svc-a"]);
      await waitFor(() => a.svc.directory.ownedShards().length === SHARDS, "svc-a to own every shard");
    } finally {
      await a.broker.stop();
      await b.broker.stop();
      await deleteRedisKeys(admin, prefix);
    }
  });
});
