import { createHash } from "node:crypto";

/**
 * Rendezvous (highest-random-weight) hashing: each shard goes to the node with the highest
 * weight(node, shard). A node joining takes only the shards where it now weighs most; a node
 * leaving gives up only its own shards, each to its runner-up. Every node computes the same
 * answer from the same member list, with no coordination beyond the list.
 */
export function weight(nodeId: string, shard: number): bigint {
  return createHash("sha256").update(`${nodeId}\u0000${shard}`).digest().readBigUInt64BE(0);
}

/** The node a shard belongs to among `nodeIds` (undefined when there is none). */
export function rendezvousOwner(nodeIds: readonly string[], shard: number): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const id of nodeIds) {
    const w = weight(id, shard);
    // Ties (practically impossible with 64 bits) go to the smaller id, so every node agrees.
    if (w > bestWeight || (w === bestWeight && best !== undefined && id < best)) {
      best = id;
      bestWeight = w;
    }
  }
  return best;
}

/** The owner of every shard `0 .. shardCount-1` among `nodeIds`. */
export function rendezvousAssign(nodeIds: readonly string[], shardCount: number): (string | undefined)[] {
  return Array.from({ length: shardCount }, (_, shard) => rendezvousOwner(nodeIds, shard));
}
