import { Redis } from "ioredis";
import { readyWithin } from "../backends/readiness.ts";
import type { ShardOwner } from "./directory.ts";
import type { ShardLeases, ShardNode } from "./leases.ts";

export interface RedisLeasesOptions {
  /** A `redis://` URL; the leases open their own connection (its own timeouts) and close it on `close`. */
  readonly redis: string;
  /** Prepended to every key (e.g. "routing:"); the leases add "shards:". */
  readonly keyPrefix?: string;
  readonly ttlMs: number;
}

/** Takes a free shard: a new epoch (HINCRBY, kept forever) and SET NX PX in one step. */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SET', KEYS[1], cjson.encode({ owner = ARGV[2], url = ARGV[3], epoch = epoch }), 'NX', 'PX', ARGV[4])
return epoch
`;

/** Compare-and-set on (owner, epoch): renew (ARGV[3] = ttl) or release (ARGV[3] absent). */
const RENEW_OR_RELEASE = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, lease = pcall(cjson.decode, raw)
if not ok or lease.owner ~= ARGV[1] or tostring(lease.epoch) ~= ARGV[2] then return 0 end
if ARGV[3] then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('DEL', KEYS[1]) end
return 1
`;

/** Members: hash id -> "<until ms>|<url>", by Redis's clock. Refreshes the shard count record when it holds ARGV[4]. */
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
`;

const MEMBERS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], '|', 1, true)
  if sep and tonumber(string.sub(all[i + 1], 1, sep - 1)) > now then
    table.insert(live, all[i]); table.insert(live, string.sub(all[i + 1], sep + 1))
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
`;

const CLAIM_COUNT = `
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
`;

/** Leases read per MGET. */
const READ_BATCH = 512;

/**
 * Shard leases in Redis (a single Redis or a Sentinel-managed primary). Keys, after the prefix:
 * `shards:lease:<n>` (JSON owner, url, epoch; PX ttl), `shards:epochs` (hash shard -> last epoch,
 * never expires: epochs keep increasing across lapses), `shards:members` (hash id -> until|url,
 * by Redis's clock), `shards:count` (the cluster's shard count, PX ttl refreshed by heartbeats).
 * Every decision is one Lua script, so it is atomic at the server; TTLs are Redis's clock.
 */
export function createRedisLeases(opts: RedisLeasesOptions): ShardLeases {
  const p = `${opts.keyPrefix ?? ""}shards:`;
  const ttl = opts.ttlMs;
  // Fail within a fraction of the lease rather than queue while Redis is away: the coordinator decides.
  const redis = new Redis(opts.redis, {
    maxRetriesPerRequest: 1,
    connectTimeout: Math.max(500, Math.min(5_000, ttl)),
    commandTimeout: Math.max(500, Math.floor(ttl / 2)),
    retryStrategy: (times) => Math.min(times * 100, 1_000),
  });
  redis.on("error", () => {}); // reported by the failing calls; ioredis reconnects by itself
  const leaseKey = (shard: number) => `${p}lease:${shard}`;
  let claimed = "";
  const parse = (shard: number, raw: string | null): ShardOwner | undefined => {
    if (raw === null) return undefined;
    try {
      const v = JSON.parse(raw) as Partial<ShardOwner>;
      return typeof v.owner === "string" && typeof v.epoch === "number"
        ? { shard, owner: v.owner, url: typeof v.url === "string" ? v.url : "", epoch: v.epoch }
        : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    engine: "redis",
    ttlMs: ttl,
    async acquire(shard, node) {
      const epoch = (await redis.eval(ACQUIRE, 2, leaseKey(shard), `${p}epochs`, String(shard), node.id, node.url, String(ttl))) as number | null;
      return epoch === null ? undefined : { shard, owner: node.id, url: node.url, epoch: Number(epoch) };
    },
    async renew(shard, nodeId, epoch) {
      return (await redis.eval(RENEW_OR_RELEASE, 1, leaseKey(shard), nodeId, String(epoch), String(ttl))) === 1;
    },
    async release(shard, nodeId, epoch) {
      return (await redis.eval(RENEW_OR_RELEASE, 1, leaseKey(shard), nodeId, String(epoch))) === 1;
    },
    async owners() {
      const out: ShardOwner[] = [];
      const count = claimed === "" ? undefined : Number(claimed);
      // Without a claimed count, read what exists (the REPL or a test may look before claiming).
      const shards = count !== undefined ? Array.from({ length: count }, (_, i) => i) : await scanShards();
      for (let i = 0; i < shards.length; i += READ_BATCH) {
        const batch = shards.slice(i, i + READ_BATCH);
        const values = await redis.mget(...batch.map(leaseKey));
        batch.forEach((shard, j) => {
          const o = parse(shard, values[j] ?? null);
          if (o) out.push(o);
        });
      }
      return out;
    },
    async heartbeat(node: ShardNode) {
      await redis.eval(HEARTBEAT, 2, `${p}members`, `${p}count`, node.id, node.url, String(ttl), claimed);
    },
    async leave(nodeId) {
      await redis.hdel(`${p}members`, nodeId);
    },
    async members() {
      const flat = (await redis.eval(MEMBERS, 1, `${p}members`)) as string[];
      const out: ShardNode[] = [];
      for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i], url: flat[i + 1] });
      return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
    async claimShardCount(count) {
      const recorded = Number(await redis.eval(CLAIM_COUNT, 1, `${p}count`, String(count), String(ttl)));
      if (recorded === count) claimed = String(count);
      return recorded;
    },
    ready: () => readyWithin(redis.ping(), (answer) => answer === "PONG"),
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };

  async function scanShards(): Promise<number[]> {
    const found: number[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${p}lease:*`, "COUNT", 500);
      cursor = next;
      for (const k of keys) found.push(Number(k.slice(`${p}lease:`.length)));
    } while (cursor !== "0");
    return found.filter(Number.isInteger).sort((a, b) => a - b);
  }
}
