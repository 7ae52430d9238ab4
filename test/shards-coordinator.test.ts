import { describe, expect, it } from "vitest";
import { createShardCoordinator } from "../shards/coordinator.ts";
import { createMemoryLeases } from "../shards/memory-leases.ts";
import { rendezvousOwner } from "../shards/rendezvous.ts";
import { manualClock } from "./contracts/fixture.ts";

/* One coordinator on in-process leases (the embedded default), its clock moved by hand. */

function single(shardCount = 8) {
  const clock = manualClock();
  const leases = createMemoryLeases({ ttlMs: 5_000, now: clock.now });
  const c = createShardCoordinator({ leases, shardCount, nodeId: "solo", url: () => "http://solo:8080", now: clock.now });
  return { c, clock, leases };
}

describe("shard coordinator", () => {
  it("a single node owns every shard once started, and tells its listeners in order", async () => {
    const { c } = single();
    const heard: string[] = [];
    c.onChange((shard, owned) => heard.push(`${shard}:${owned}`));
    expect(c.ownedShards()).toEqual([]);
    expect(c.ready()).toBe(false);
    await c.start();
    expect(c.ownedShards()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(c.ownerOf(3)).toEqual({ shard: 3, owner: "solo", url: "http://solo:8080", epoch: 1 });
    expect(c.shardOf("urn:sm:user:alice")).toBe(c.shardOf("urn:sm:user:alice"));
    expect(c.ready()).toBe(true);
    await c.drain();
    expect(c.ownedShards()).toEqual([]);
    expect(heard.filter((h) => h.startsWith("3:"))).toEqual(["3:true", "3:false"]);
    expect(c.ready()).toBe(false);
    await c.close();
  });

  it("stops answering as owner at the lease's local deadline even before any timer ran (a stalled event loop)", async () => {
    const { c, clock } = single();
    await c.start();
    expect(c.ownsShard(0)).toBe(true);
    clock.advance(5_000); // nothing has run: no renewal, no lapse timer
    expect(c.ownsShard(0)).toBe(false);
    expect(c.ownedShards()).toEqual([]);
    expect(c.ownerOf(0)).toBeUndefined();
    c.halt();
  });

  it("refuses a shard count other than the one recorded", async () => {
    const { c, leases, clock } = single(8);
    await c.start();
    const other = createShardCoordinator({ leases, shardCount: 16, nodeId: "other", url: () => "http://other:8080", now: clock.now });
    await expect(other.start()).rejects.toThrow("ROUTING_SHARD_COUNT=16 differs from the cluster's 8 (recorded in in-process)");
    c.halt();
  });
  it("sends clients to the url a live owner's member record gives, and nowhere while the holder is no longer a member", async () => {
    const clock = manualClock();
    const leases = createMemoryLeases({ ttlMs: 5_000, now: clock.now });
    // x acquires every shard before its HTTP port is bound: its leases carry port 0.
    let xUrl = "http://x:0";
    const x = createShardCoordinator({ leases, shardCount: 8, nodeId: "x", url: () => xUrl, now: clock.now });
    await x.start();
    xUrl = "http://x:8080";
    await x.poll();
    const y = createShardCoordinator({ leases, shardCount: 8, nodeId: "y", url: () => "http://y:8080", now: clock.now });
    await y.start();
    const kept = [0, 1, 2, 3, 4, 5, 6, 7].find((s) => rendezvousOwner(["x", "y"], s) === "x")!;
    expect(kept).toBeDefined();
    expect(y.ownerOf(kept)).toMatchObject({ owner: "x", url: "http://x:8080" });
    // x's member record is gone (it died; its leases have not lapsed yet): no owner, never port 0.
    await leases.leave("x");
    await y.poll();
    expect(y.ownsShard(kept)).toBe(false);
    expect(y.ownerOf(kept)).toBeUndefined();
    x.halt();
    y.halt();
  });
});
