import { describe, expect, it } from "vitest";
import { createShardCoordinator } from "../shards/coordinator.ts";
import { createMemoryLeases } from "../shards/memory-leases.ts";
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
});
