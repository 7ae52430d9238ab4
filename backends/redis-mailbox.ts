import { Redis } from "ioredis";
import { HIGH_PRIORITY } from "../core/envelope.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import {
  DEFAULT_RETENTION_MS,
  type Mailbox,
  type MailboxDepth,
  type MailboxEntry,
  type MailboxOptions,
  type MailboxPurged,
  type MailboxUsage,
  type StoreOutcome,
} from "./mailbox.ts";
import { readyWithin } from "./readiness.ts";
import { ACK, EXPIRE, FETCH, PURGE, STORE, type Script } from "./redis-mailbox-scripts.ts";

export interface RedisMailboxOptions extends MailboxOptions {
  /**
   * A `redis://` URL (the mailbox opens its own connection and closes it on `close`) or a client the
   * caller owns (shared with other roles; never closed here).
   */
  readonly redis: string | Redis;
  /** Prepended to every key, so deployments can share one Redis (e.g. "routing:"). Default "". */
  readonly keyPrefix?: string;
  /** Clock of the retention cutoff (the router stamps queuedAt with Date.now); default Date.now. */
  readonly now?: () => number;
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
 * - `mbox:{<urn>}:dedupidx`: sorted set messageId -> record expiry, so `purge` finds the records.
 * - `mbox:{<urn>}:sizes` (hash messageId -> envelope bytes) and `mbox:{<urn>}:bytes` (their sum):
 *   with ZCARD of `order`, the usage the quota reads in O(1).
 * Each operation is one Lua script (backends/redis-mailbox-scripts.ts), so store (de-duplication
 * record and message together), fetch and ack are atomic. The de-duplication window is measured by
 * Redis's clock; the retention cutoff by `now` (the clock that stamped queuedAt).
 *
 * Two keys span recipients (no hash tag), kept after each script as a best-effort index: a lost
 * update (a crash between the script and it) is mended by the next store, fetch or ack of that mailbox.
 * - `mbox-expiry`: sorted set urn -> its oldest queuedAt (at most); `expire` removes expired
 *   messages mailbox by mailbox through a score range on it, then on the mailbox's `queued`.
 * - `mbox-depths`: sorted set urn -> message count, for `largest` (counts only leave this module).
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

interface StoredEntry {
  readonly priority: number;
  readonly envelope: string;
  readonly queuedAt: number;
}

/** Ids per ACK script call, so one call never blocks Redis for long. */
const ACK_BATCH = 500;
/** Mailboxes taken from the expiry index per step, and messages one EXPIRE call removes at most. */
const EXPIRE_MAILBOXES = 50;
const EXPIRE_PER_CALL = 500;
/** De-duplication records one PURGE call removes besides the messages' own. */
const PURGE_DEDUP_BATCH = 1_000;

class RedisMailbox implements Mailbox {
  #redis: Redis;
  #owned: boolean;
  #prefix: string;
  #ttlMs: number;
  #retentionMs: number;
  #onExpired: ((count: number) => void) | undefined;
  #now: () => number;
  #open = true;

  constructor(opts: RedisMailboxOptions) {
    this.#owned = typeof opts.redis === "string";
    this.#redis = typeof opts.redis === "string" ? new Redis(opts.redis, CLIENT_OPTIONS) : opts.redis;
    this.#prefix = opts.keyPrefix ?? "";
    this.#ttlMs = opts.dedupTtlMs;
    this.#retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.#onExpired = opts.onExpired;
    this.#now = opts.now ?? Date.now;
  }

  store(entry: MailboxEntry): Promise<StoreOutcome> {
    return this.#guard("mailbox store", async () => {
      const k = this.#keys(entry.recipientId);
      const stored: StoredEntry = { priority: entry.priority, envelope: entry.envelope, queuedAt: entry.queuedAt };
      const result = Number(
        await this.#run(
          STORE,
          [...this.#messageKeys(k), `${k}:seq`, `${k}:dedup:${entry.messageId}`, `${k}:dedupidx`],
          [
            String(this.#ttlMs),
            entry.messageId,
            entry.priority >= HIGH_PRIORITY ? "1" : "0",
            JSON.stringify(stored),
            String(entry.queuedAt),
            String(Buffer.byteLength(entry.envelope)),
          ],
        ),
      );
      if (result < 0) return "duplicate";
      // ZADD LT keeps the oldest queuedAt (and adds a missing member).
      await this.#index(entry.recipientId, result, entry.queuedAt);
      return "stored";
    });
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return this.#guard("mailbox fetch", async () => {
      if (limit <= 0) return [];
      const k = this.#keys(recipientId);
      const flat = await this.#run(FETCH, this.#messageKeys(k), [String(Math.floor(limit)), String(this.#cutoff())]);
      if (!Array.isArray(flat) || flat.length < 2) throw new Error("unexpected fetch reply");
      const expired = Number(flat[0]);
      if (expired > 0) {
        this.#onExpired?.(expired);
        await this.#index(recipientId, Number(flat[1]));
      }
      const entries: MailboxEntry[] = [];
      for (let i = 2; i + 1 < flat.length; i += 2) {
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
      let count = -1;
      for (let i = 0; i < messageIds.length; i += ACK_BATCH) {
        const batch = messageIds.slice(i, i + ACK_BATCH);
        const [n, left] = (await this.#run(ACK, this.#messageKeys(k), batch)) as [number, number];
        removed += Number(n);
        count = Number(left);
      }
      if (removed > 0) await this.#index(recipientId, count);
      return removed;
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return this.#guard("mailbox depth", async () => {
      const queued = `${this.#keys(recipientId)}:queued`;
      const from = `(${this.#cutoff()}`;
      const results = await this.#redis.multi().zcount(queued, from, "+inf").zrangebyscore(queued, from, "+inf", "WITHSCORES", "LIMIT", 0, 1).exec();
      if (results === null) throw new Error("redis transaction aborted");
      for (const [err] of results) if (err) throw err;
      const count = Number(results[0][1]);
      const oldest = results[1][1] as string[];
      return { count, oldestQueuedAt: oldest.length === 2 ? Number(oldest[1]) : undefined };
    });
  }

  usage(recipientId: Urn): Promise<MailboxUsage> {
    return this.#guard("mailbox usage", async () => {
      const k = this.#keys(recipientId);
      const results = await this.#redis.multi().zcard(`${k}:order`).get(`${k}:bytes`).exec();
      if (results === null) throw new Error("redis transaction aborted");
      for (const [err] of results) if (err) throw err;
      return { count: Number(results[0][1]), bytes: Number(results[1][1] ?? 0) };
    });
  }

  largest(limit: number): Promise<number[]> {
    return this.#guard("mailbox largest", async () => {
      if (limit <= 0) return [];
      const flat = await this.#redis.zrevrange(`${this.#prefix}mbox-depths`, 0, limit - 1, "WITHSCORES");
      const counts: number[] = [];
      for (let i = 1; i < flat.length; i += 2) counts.push(Number(flat[i]));
      return counts;
    });
  }

  /**
   * Mailboxes whose oldest message is past the cutoff, from `mbox-expiry`, a few at a time: each is
   * taken out of the index, swept by one EXPIRE script (at most EXPIRE_PER_CALL messages), and put
   * back with its new oldest queuedAt if anything is left. A store racing with it re-adds itself.
   */
  expire(limit: number): Promise<number> {
    return this.#guard("mailbox expire", async () => {
      const cutoff = this.#cutoff();
      const index = `${this.#prefix}mbox-expiry`;
      let total = 0;
      while (total < limit) {
        const due = await this.#redis.zrangebyscore(index, "-inf", cutoff, "LIMIT", 0, EXPIRE_MAILBOXES);
        if (due.length === 0) break;
        for (const urn of due) {
          if (total >= limit) break;
          await this.#redis.zrem(index, urn);
          const k = this.#keys(urn as Urn);
          const [removed, count, oldest] = (await this.#run(EXPIRE, this.#messageKeys(k), [
            String(cutoff),
            String(Math.min(EXPIRE_PER_CALL, limit - total)),
          ])) as [number, number, number];
          total += Number(removed);
          await this.#index(urn as Urn, Number(count), Number(oldest) >= 0 ? Number(oldest) : undefined);
        }
      }
      return total;
    });
  }

  purge(recipientId: Urn): Promise<MailboxPurged> {
    return this.#guard("mailbox purge", async () => {
      const k = this.#keys(recipientId);
      let messages = 0;
      let dedup = 0;
      for (;;) {
        const [m, d, left] = (await this.#run(PURGE, [...this.#messageKeys(k), `${k}:seq`, `${k}:dedupidx`], [`${k}:dedup:`, String(PURGE_DEDUP_BATCH)])) as [
          number,
          number,
          number,
        ];
        messages += Number(m);
        dedup += Number(d);
        if (Number(left) === 0) break;
      }
      await this.#redis.multi().zrem(`${this.#prefix}mbox-expiry`, recipientId).zrem(`${this.#prefix}mbox-depths`, recipientId).exec();
      return { messages, dedup };
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

  #cutoff(): number {
    return this.#now() - this.#retentionMs;
  }

  /** The cross-recipient indexes after a mailbox changed: its count, and its oldest queuedAt if known. */
  async #index(recipientId: Urn, count: number, oldest?: number): Promise<void> {
    const tx = this.#redis.multi();
    if (count > 0) tx.zadd(`${this.#prefix}mbox-depths`, count, recipientId);
    else tx.zrem(`${this.#prefix}mbox-depths`, recipientId).zrem(`${this.#prefix}mbox-expiry`, recipientId);
    if (count > 0 && oldest !== undefined) tx.zadd(`${this.#prefix}mbox-expiry`, "LT", oldest, recipientId);
    await tx.exec();
  }

  #keys(recipientId: Urn): string {
    return `${this.#prefix}mbox:{${recipientId}}`;
  }

  #messageKeys(k: string): string[] {
    return [`${k}:order`, `${k}:entries`, `${k}:queued`, `${k}:sizes`, `${k}:bytes`];
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
