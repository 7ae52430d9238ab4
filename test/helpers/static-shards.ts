import type { Urn } from "../../core/urn.ts";
import { shardOf, type ShardDirectory, type ShardOwner } from "../../shards/directory.ts";

/**
 * A hand-driven shard table for tests of what consumes a ShardDirectory (bridges, gateway, broker):
 * `assign` moves a shard and tells the nodes involved, as the coordinator's directory would.
 * The coordinator itself (leases, rendezvous) has its own tests.
 */
export function createShardTable(shardCount: number) {
  const owners = new Map<number, ShardOwner>();
  const listeners = new Map<string, Set<(shard: number, owned: boolean) => void>>();
  let epoch = 0;

  function directory(nodeId: string): ShardDirectory {
    return {
      shardCount,
      shardOf: (urn: Urn | string) => shardOf(urn, shardCount),
      ownsShard: (shard) => owners.get(shard)?.owner === nodeId,
      ownerOf: (shard) => owners.get(shard),
      ownedShards: () => [...owners.values()].filter((o) => o.owner === nodeId).map((o) => o.shard),
      onChange(listener) {
        const set = listeners.get(nodeId) ?? new Set();
        listeners.set(nodeId, set);
        set.add(listener);
        return () => set.delete(listener);
      },
    };
  }

  /** Gives `shard` to `nodeId` (undefined: no owner), telling the old and the new owner. */
  function assign(shard: number, nodeId: string | undefined, url = `http://${nodeId}.test`): void {
    const before = owners.get(shard)?.owner;
    if (before === nodeId) return;
    if (nodeId === undefined) owners.delete(shard);
    else owners.set(shard, { shard, owner: nodeId, url, epoch: ++epoch });
    if (before !== undefined) for (const l of listeners.get(before) ?? []) l(shard, false);
    if (nodeId !== undefined) for (const l of listeners.get(nodeId) ?? []) l(shard, true);
  }

  /** A URN of the given shard (found by trying names). */
  function urnIn(shard: number, tag: string): Urn {
    for (let i = 0; ; i++) {
      const urn = `urn:sm:user:${tag}-${i}` as Urn;
      if (shardOf(urn, shardCount) === shard) return urn;
    }
  }

  return { directory, assign, urnIn };
}
