import type { ShardOwner } from "./directory.ts";

/** A node taking part in sharded delivery. */
export interface ShardNode {
  /** Instance id (ROUTING_INSTANCE_ID). */
  readonly id: string;
  /** Its ROUTING_PUBLIC_URL. */
  readonly url: string;
}

/** Thrown by `claimShardCount` when the cluster already runs with another ROUTING_SHARD_COUNT. */
export class ShardCountMismatch extends Error {
  constructor(
    readonly mine: number,
    readonly cluster: number,
    engine: string,
  ) {
    super(
      `ROUTING_SHARD_COUNT=${mine} differs from the cluster's ${cluster} (recorded in ${engine}); every node of a cluster must run with the same shard count, so this node refuses to start`,
    );
    this.name = "ShardCountMismatch";
  }
}

/**
 * The coordinator's engine (Redis, NATS JetStream KV, or in-process for a single node): shard
 * leases, the membership of live nodes and the cluster's shard count. Never a consensus of our
 * own: every decision is one atomic operation of the engine.
 *
 * Guarantees:
 * - Leases. At most one holder per shard at a time. `acquire` succeeds only when the shard has no
 *   live lease; it grants a fencing `epoch` strictly greater than every epoch the shard had before
 *   (so each change of hands is a new, higher epoch; a renewal keeps the epoch).
 * - A lease lapses `ttlMs` after its last successful acquire or renew, as measured by the engine
 *   from the moment it applied the operation. A holder that counts `ttlMs` from the moment it SENT
 *   the request therefore always stops before the engine can grant the shard to anyone else.
 * - `renew` and `release` are compare-and-set on (holder, epoch): they succeed only while that
 *   holder still has that epoch, and never touch a lease another node has since acquired.
 *   After `release` the shard can be acquired at once.
 * - `owners()` reads every live lease now (epoch, holder and the url it gave).
 * - Membership: `heartbeat` keeps a node listed for `ttlMs`; `leave` removes it at once;
 *   `members()` lists the nodes whose record has not lapsed, sorted by id.
 * - Shard count: `claimShardCount` records the count if none is recorded and answers the recorded
 *   one; the record lives while any member heartbeats (each heartbeat refreshes it), so a whole
 *   cluster restarted with a new count can change it, a single node cannot.
 * - Every method rejects when the engine cannot be reached (bounded by a timeout below `ttlMs`);
 *   nothing is retried silently, the caller decides.
 */
export interface ShardLeases {
  /** Engine name for logs and messages ("redis", "nats-kv", "in-process"). */
  readonly engine: string;
  readonly ttlMs: number;

  acquire(shard: number, node: ShardNode): Promise<ShardOwner | undefined>;
  renew(shard: number, nodeId: string, epoch: number): Promise<boolean>;
  release(shard: number, nodeId: string, epoch: number): Promise<boolean>;
  owners(): Promise<ShardOwner[]>;

  heartbeat(node: ShardNode): Promise<void>;
  leave(nodeId: string): Promise<void>;
  members(): Promise<ShardNode[]>;

  claimShardCount(count: number): Promise<number>;

  /** The engine answers (readiness). */
  ready(): Promise<boolean>;
  /** Closes what this instance opened; leases and records stay (they lapse by TTL). */
  close(): Promise<void>;
}
