import { crc32 } from "node:zlib";
import type { Urn } from "../core/urn.ts";

/**
 * shard(urn) = CRC-32 (IEEE 802.3, zlib's crc32) of the URN's UTF-8 bytes, mod the shard count
 * (contract, "Sharded delivery").
 */
export function shardOf(urn: Urn | string, shardCount: number): number {
  return crc32(Buffer.from(urn, "utf8")) % shardCount;
}

/** Who owns a shard, as the lease engine last said. */
export interface ShardOwner {
  readonly shard: number;
  /** Instance id of the owning node. */
  readonly owner: string;
  /** The owner's ROUTING_PUBLIC_URL (sent in MOVED answers and by GET /route). */
  readonly url: string;
  /** Fencing epoch of the lease: strictly increases each time the shard changes hands. */
  readonly epoch: number;
}

/**
 * What the rest of the node (gateway, MQTT broker, signal bridges, router) asks about shard
 * ownership. Implemented by the `shards` service (coordinator: leases + rendezvous + one
 * ownership machine per shard); the embedded default owns every shard itself.
 *
 * Guarantees:
 * - `ownsShard(n)` is true only while this node holds a lease for `n` that has not lapsed by its
 *   own clock (it turns false before the lease can be granted to another node).
 * - `ownerOf(n)` answers from the last known view (never a remote call); undefined while the shard
 *   has no owner, and while its lease holder is no longer a live member (a dead node's lease is
 *   lapsing): there is nobody to send a client to until a live node holds it. The url is the one
 *   the owner's member record gives now.
 * - `onChange` listeners hear every shard this node acquires (`owned: true`) or stops owning
 *   (`owned: false`), in order per shard.
 */
export interface ShardDirectory {
  readonly shardCount: number;
  shardOf(urn: Urn | string): number;
  ownsShard(shard: number): boolean;
  ownerOf(shard: number): ShardOwner | undefined;
  /** The shards this node owns now. */
  ownedShards(): readonly number[];
  onChange(listener: (shard: number, owned: boolean) => void): () => void;
}
