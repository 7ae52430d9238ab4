import type { ShardDirectory } from "../shards/directory.ts";

/**
 * Follows the shards this node owns: `acquired` for each one owned now and each one gained later,
 * `lost` for each one given up, in the directory's order per shard. Returns the unsubscribe.
 */
export function followOwnedShards(shards: ShardDirectory, on: { acquired(shard: number): void; lost(shard: number): void }): () => void {
  const held = new Set<number>();
  const change = (shard: number, owned: boolean): void => {
    if (owned && !held.has(shard)) {
      held.add(shard);
      on.acquired(shard);
    } else if (!owned && held.delete(shard)) on.lost(shard);
  };
  const stop = shards.onChange(change);
  for (const shard of shards.ownedShards()) change(shard, true);
  return stop;
}
