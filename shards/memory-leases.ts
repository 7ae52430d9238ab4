import type { ShardOwner } from "./directory.ts";
import type { ShardLeases, ShardNode } from "./leases.ts";

export interface MemoryLeasesOptions {
  readonly ttlMs: number;
  /** The clock leases lapse by (tests move it by hand); default Date.now. */
  readonly now?: () => number;
}

interface Held extends ShardOwner {
  readonly until: number;
}

/**
 * Shard leases in this process's memory: the embedded default, where the single node is the only
 * member and so owns every shard. Several coordinators in one process may share one instance (the
 * contract tests do); leases never leave the process, so it cannot coordinate separate nodes.
 */
export function createMemoryLeases(opts: MemoryLeasesOptions): ShardLeases {
  const now = opts.now ?? Date.now;
  const leases = new Map<number, Held>();
  const epochs = new Map<number, number>();
  const members = new Map<string, { node: ShardNode; until: number }>();
  let count: { value: number; until: number } | undefined;
  const live = (shard: number): Held | undefined => {
    const held = leases.get(shard);
    if (held && held.until <= now()) {
      leases.delete(shard);
      return undefined;
    }
    return held;
  };
  const liveMembers = (): ShardNode[] => {
    for (const [id, m] of members) if (m.until <= now()) members.delete(id);
    return [...members.values()].map((m) => m.node).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  };
  return {
    engine: "in-process",
    ttlMs: opts.ttlMs,
    async acquire(shard, node) {
      if (live(shard)) return undefined;
      const epoch = (epochs.get(shard) ?? 0) + 1;
      epochs.set(shard, epoch);
      const held = { shard, owner: node.id, url: node.url, epoch, until: now() + opts.ttlMs };
      leases.set(shard, held);
      return { shard, owner: node.id, url: node.url, epoch };
    },
    async renew(shard, nodeId, epoch) {
      const held = live(shard);
      if (!held || held.owner !== nodeId || held.epoch !== epoch) return false;
      leases.set(shard, { ...held, until: now() + opts.ttlMs });
      return true;
    },
    async release(shard, nodeId, epoch) {
      const held = live(shard);
      if (!held || held.owner !== nodeId || held.epoch !== epoch) return false;
      leases.delete(shard);
      return true;
    },
    async owners() {
      const out: ShardOwner[] = [];
      for (const shard of [...leases.keys()].sort((a, b) => a - b)) {
        const held = live(shard);
        if (held) out.push({ shard, owner: held.owner, url: held.url, epoch: held.epoch });
      }
      return out;
    },
    async heartbeat(node) {
      members.set(node.id, { node: { id: node.id, url: node.url }, until: now() + opts.ttlMs });
      if (count) count.until = now() + opts.ttlMs;
    },
    async leave(nodeId) {
      members.delete(nodeId);
    },
    async members() {
      return liveMembers();
    },
    async claimShardCount(value) {
      if (count && count.until > now()) return count.value;
      count = { value, until: now() + opts.ttlMs };
      return value;
    },
    ready: async () => true,
    close: async () => {},
  };
}
