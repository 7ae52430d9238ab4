import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ShardLeases, ShardNode } from "../../shards/leases.ts";
import { waitFor } from "./fixture.ts";

/**
 * One engine under test. `open` gives one node's handle on a shared engine (every call in a test
 * reaches the same leases); `pass(ms)` lets that much lease time go by (a manual clock moves, a
 * real engine's time is slept through); `teardown` closes every handle and removes what the test
 * created.
 */
export interface LeasesFixture {
  open(): Promise<ShardLeases>;
  pass(ms: number): Promise<void>;
  /** The clock lease time is measured by (manual, or Date.now for a real engine). */
  now(): number;
  teardown(): Promise<void>;
}

const A: ShardNode = { id: "node-a", url: "http://a.example:8080" };
const B: ShardNode = { id: "node-b", url: "http://b.example:8080" };
const C: ShardNode = { id: "node-c", url: "http://c.example:8080" };

/** Every guarantee of `ShardLeases` (shards/leases.ts), for one engine; `ttlMs` is the lease length the factory gave. */
export function describeShardLeasesContract(name: string, ttlMs: number, factory: () => Promise<LeasesFixture>): void {
  describe(`ShardLeases contract: ${name}`, () => {
    let fx: LeasesFixture;
    let a: ShardLeases;
    let b: ShardLeases;
    beforeEach(async () => {
      fx = await factory();
      a = await fx.open();
      b = await fx.open();
    });
    afterEach(async () => {
      await fx.teardown();
    });
    const ownerOf = async (leases: ShardLeases, shard: number) => (await leases.owners()).find((o) => o.shard === shard);

    it("grants a free shard to one node, with an epoch, and refuses it to another while held", async () => {
      const got = await a.acquire(3, A);
      expect(got).toMatchObject({ shard: 3, owner: A.id, url: A.url });
      expect(got?.epoch).toBeGreaterThan(0);
      expect(await b.acquire(3, B)).toBeUndefined();
      expect(await ownerOf(b, 3)).toEqual(got);
      expect(await ownerOf(b, 4)).toBeUndefined();
    });

    it("gives exactly one winner when nodes race for a shard", async () => {
      const c = await fx.open();
      const results = await Promise.all([a.acquire(7, A), b.acquire(7, B), c.acquire(7, C)]);
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(1);
      expect((await ownerOf(c, 7))?.owner).toBe(winners[0]?.owner);
    });

    it("renews and releases only for the holder at its epoch (compare-and-set)", async () => {
      const got = await a.acquire(1, A);
      if (!got) throw new Error("acquire failed");
      expect(await b.renew(1, B.id, got.epoch)).toBe(false);
      expect(await a.renew(1, A.id, got.epoch + 1)).toBe(false);
      expect(await b.release(1, B.id, got.epoch)).toBe(false);
      expect(await a.release(1, A.id, got.epoch - 1)).toBe(false);
      expect(await ownerOf(b, 1)).toEqual(got);
      expect(await a.renew(1, A.id, got.epoch)).toBe(true);
      expect(await ownerOf(b, 1)).toEqual(got); // a renewal keeps the epoch
    });

    it("after a release the shard is free at once, and the next holder has a strictly higher epoch", async () => {
      const first = await a.acquire(2, A);
      if (!first) throw new Error("acquire failed");
      expect(await a.release(2, A.id, first.epoch)).toBe(true);
      expect(await ownerOf(b, 2)).toBeUndefined();
      const second = await b.acquire(2, B);
      expect(second?.owner).toBe(B.id);
      expect(second?.epoch).toBeGreaterThan(first.epoch);
      // Back to A: higher again.
      expect(await b.release(2, B.id, second?.epoch ?? 0)).toBe(true);
      const third = await a.acquire(2, A);
      expect(third?.epoch).toBeGreaterThan(second?.epoch ?? Infinity);
      expect(await a.release(2, A.id, third?.epoch ?? 0)).toBe(true);
      expect(await a.release(2, A.id, third?.epoch ?? 0)).toBe(false); // idempotent, and honest about it
    });

    it("a lease lapses ttl after its last renewal, not before; the old holder can then neither renew nor release", async () => {
      const got = await a.acquire(5, A);
      if (!got) throw new Error("acquire failed");
      // Renewed twice at half the TTL: alive past the first TTL.
      await fx.pass(ttlMs / 2);
      expect(await a.renew(5, A.id, got.epoch)).toBe(true);
      await fx.pass(ttlMs / 2);
      const sentAt = fx.now();
      expect(await a.renew(5, A.id, got.epoch)).toBe(true);
      await fx.pass(ttlMs / 2);
      expect(await ownerOf(b, 5)).toEqual(got);
      await fx.pass(ttlMs / 2);
      await waitFor(async () => (await ownerOf(b, 5)) === undefined, "the lease to lapse", ttlMs * 5);
      expect(fx.now() - sentAt).toBeGreaterThanOrEqual(ttlMs);
      const next = await b.acquire(5, B);
      expect(next?.epoch).toBeGreaterThan(got.epoch);
      expect(await a.renew(5, A.id, got.epoch)).toBe(false);
      expect(await a.release(5, A.id, got.epoch)).toBe(false);
      expect(await ownerOf(a, 5)).toEqual(next);
    });

    it("lists live members sorted by id; leave removes one at once; a silent member lapses", async () => {
      await b.heartbeat(B);
      await a.heartbeat(A);
      expect(await a.members()).toEqual([A, B]);
      await a.leave(A.id);
      expect(await b.members()).toEqual([B]);
      await a.heartbeat(A);
      // A keeps beating, B falls silent.
      for (let i = 0; i < 3; i++) {
        await fx.pass(ttlMs / 2);
        await a.heartbeat(A);
      }
      await waitFor(async () => (await a.members()).length === 1, "the silent member to lapse", ttlMs * 5);
      expect(await b.members()).toEqual([A]);
    });

    it("records the shard count: the first claim wins, another count is answered with the recorded one while members beat", async () => {
      expect(await a.claimShardCount(256)).toBe(256);
      expect(await b.claimShardCount(128)).toBe(256);
      expect(await b.claimShardCount(256)).toBe(256);
      for (let i = 0; i < 3; i++) {
        await fx.pass(ttlMs / 2);
        await a.heartbeat(A);
      }
      expect(await b.claimShardCount(64)).toBe(256);
    });

    it("forgets the shard count once no member beats (a whole cluster may restart with a new one)", async () => {
      expect(await a.claimShardCount(256)).toBe(256);
      await a.heartbeat(A);
      await fx.pass(ttlMs);
      await waitFor(async () => (await b.members()).length === 0, "the member to lapse", ttlMs * 5);
      await waitFor(async () => (await b.claimShardCount(64)) === 64, "the count record to lapse", ttlMs * 5);
      expect(await a.claimShardCount(256)).toBe(64);
    });

    it("answers ready", async () => {
      expect(await a.ready()).toBe(true);
    });
  });
}
