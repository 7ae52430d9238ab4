import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Mailbox, MailboxDepth, MailboxEntry, MailboxOptions, StoreOutcome } from "./mailbox.ts";
import { readyWithin } from "./readiness.ts";

export interface RedisMailboxOptions extends MailboxOptions {
  /**
   * A `redis://` URL (the mailbox opens its own connection and closes it on `close`) or a client the
   * caller owns (shared with other roles; never closed here).
   */
  readonly redis: string | Redis;
  /** Prepended to every key, so deployments can share one Redis (e.g. "routing:"). Default "". */
  readonly keyPrefix?: string;
}

/**
 * Mailboxes in Redis. Per recipient (keys after the prefix, all with the hash tag `{<urn>}` so one
 * mailbox lives in one Redis Cluster slot and its scripts stay single-slot):
 * - `mbox:{<urn>}:order`: sorted set of message ids; score = 0 for high priority (>= 5) or 1e15
 *   otherwise, plus a per-mailbox store sequence: high first, then store order.
 * - `mbox:{<urn>}:entries`: hash messageId -> JSON {priority, envelope, queuedAt}.
 * - `mbox:{<urn>}:queued`: sorted set messageId -> queuedAt, for depth's oldest entry.
 * - `mbox:{<urn>}:seq`: the store sequence.
 * - `mbox:{<urn>}:dedup:<messageId>`: the de-duplication record, `SET NX PX dedupTtlMs`.
 * Each operation is one Lua script, so store (de-duplication record and message together), fetch
 * and ack are atomic. The de-duplication window is measured by Redis's clock; `now` is not used.
 *
 * Durability is Redis's, not this module's: a store resolves once the primary applied it in memory.
 * Whether it survives a Redis crash depends on the server's persistence (`appendonly yes` with
 * `appendfsync always` for every write, `everysec` loses up to a second; RDB snapshots lose more;
 * none keeps nothing) and on replication (a failover may lose writes not yet replicated). The
 * Redis these tests use keeps nothing on disk (`save ""`, `appendonly no`): a restart empties it.
 */
export function createRedisMailbox(opts: RedisMailboxOptions): Mailbox {
  return new RedisMailbox(opts);
}

/** For a connection the mailbox owns: fail fast rather than queue commands while Redis is away. */
const CLIENT_OPTIONS = { maxRetriesPerRequest: 1, connectTimeout: 5_000 } as const;

/** Low-priority messages sort after every high-priority one; sequences stay far below it. */
const LOW_PRIORITY_OFFSET = 1e15;

interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

/**
 * KEYS: dedup, order, entries, queued, seq. ARGV: dedupTtlMs, messageId, high (1/0), stored JSON, queuedAt.
 * A message still in the mailbox after its window lapsed is a duplicate too (like the other stores).
 */
const STORE = script(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[5])
local score = seq
if ARGV[3] ~= '1' then score = score + ${LOW_PRIORITY_OFFSET} end
redis.call('ZADD', KEYS[2], score, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
return 1
`);

/** KEYS: order, entries. ARGV: limit. Returns [id1, json1, id2, json2, ...]. */
const FETCH = script(`
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return {} end
local values = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  if values[i] then
    out[#out + 1] = id
    out[#out + 1] = values[i]
  end
end
return out
`);

/** KEYS: order, entries, queued. ARGV: message ids. Returns how many were removed. */
const ACK = script(`
local removed = 0
for _, id in ipairs(ARGV) do
  if redis.call('HDEL', KEYS[2], id) == 1 then
    removed = removed + 1
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[3], id)
  end
end
return removed
`);

interface StoredEntry {
  readonly priority: number;
  readonly envelope: string;
  readonly queuedAt: number;
}

/** Ids per ACK script call, so one call never blocks Redis for long. */
const ACK_BATCH = 500;

class RedisMailbox implements Mailbox {
  #redis: Redis;
  #owned: boolean;
  #prefix: string;
  #ttlMs: number;
  #open = true;

  constructor(opts: RedisMailboxOptions) {
    this.#owned = typeof opts.redis === "string";
    this.#redis = typeof opts.redis === "string" ? new Redis(opts.redis, CLIENT_OPTIONS) : opts.redis;
    this.#prefix = opts.keyPrefix ?? "";
    this.#ttlMs = opts.dedupTtlMs;
  }

  store(entry: MailboxEntry): Promise<StoreOutcome> {
    return this.#guard("mailbox store", async () => {
      const k = this.#keys(entry.recipientId);
      const stored: StoredEntry = { priority: entry.priority, envelope: entry.envelope, queuedAt: entry.queuedAt };
      const result = await this.#run(
        STORE,
        [`${k}:dedup:${entry.messageId}`, `${k}:order`, `${k}:entries`, `${k}:queued`, `${k}:seq`],
        [String(this.#ttlMs), entry.messageId, entry.priority >= 5 ? "1" : "0", JSON.stringify(stored), String(entry.queuedAt)],
      );
      return result === 1 ? "stored" : "duplicate";
    });
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return this.#guard("mailbox fetch", async () => {
      if (limit <= 0) return [];
      const k = this.#keys(recipientId);
      const flat = await this.#run(FETCH, [`${k}:order`, `${k}:entries`], [String(Math.floor(limit))]);
      if (!Array.isArray(flat)) throw new Error("unexpected fetch reply");
      const entries: MailboxEntry[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const stored = JSON.parse(String(flat[i + 1])) as StoredEntry;
        entries.push({ recipientId, messageId: String(flat[i]), priority: stored.priority, envelope: stored.envelope, queuedAt: stored.queuedAt });
      }
      return entries;
    });
  }

  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number> {
    return this.#guard("mailbox ack", async () => {
      const k = this.#keys(recipientId);
      let removed = 0;
      for (let i = 0; i < messageIds.length; i += ACK_BATCH) {
        const batch = messageIds.slice(i, i + ACK_BATCH);
        removed += Number(await this.#run(ACK, [`${k}:order`, `${k}:entries`, `${k}:queued`], batch));
      }
      return removed;
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return this.#guard("mailbox depth", async () => {
      const queued = `${this.#keys(recipientId)}:queued`;
      const results = await this.#redis.multi().zcard(queued).zrange(queued, 0, 0, "WITHSCORES").exec();
      if (results === null) throw new Error("redis transaction aborted");
      for (const [err] of results) if (err) throw err;
      const count = Number(results[0][1]);
      const oldest = results[1][1] as string[];
      return { count, oldestQueuedAt: oldest.length === 2 ? Number(oldest[1]) : undefined };
    });
  }

  /** Reachable: a PING answered within 2 s (a connection still being set up gets that long). */
  async ready(): Promise<boolean> {
    if (!this.#open) return false;
    return readyWithin(this.#redis.ping(), (pong) => pong === "PONG");
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    if (this.#owned) await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  #keys(recipientId: Urn): string {
    return `${this.#prefix}mbox:{${recipientId}}`;
  }

  /** EVALSHA, sending the script itself only when Redis does not have it cached (first use, restart). */
  async #run(s: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    try {
      return await this.#redis.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return this.#redis.eval(s.lua, keys.length, ...keys, ...args);
    }
  }

  async #guard<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (!this.#open) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
    try {
      return await op();
    } catch (err) {
      throw err instanceof RoutingError ? err : new RoutingError("BACKEND_UNAVAILABLE", `${what} failed`, { cause: err });
    }
  }
}
