import { connect, type KV, type KvEntry, type NatsConnection, type QueuedIterator } from "nats";
import { readyWithin } from "../backends/readiness.ts";
import type { ShardOwner } from "./directory.ts";
import type { ShardLeases, ShardNode } from "./leases.ts";

export interface NatsLeasesOptions {
  readonly servers: string | readonly string[];
  /** KV bucket name ([A-Za-z0-9_-]); its TTL is the lease length. */
  readonly bucket: string;
  readonly ttlMs: number;
  /** How often the watched cache is rebuilt from a fresh watch; default 10 leases, at least 30 s. */
  readonly resyncMs?: number;
}

interface Stored {
  readonly owner: string;
  readonly url: string;
  /** Absent on the entry `create()` wrote: its epoch is that entry's revision. */
  readonly epoch?: number;
}

const codec = { enc: (v: unknown) => new TextEncoder().encode(JSON.stringify(v)), dec: (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as unknown };

/** The server refused a create/update/delete because the key moved on (or exists). */
function lostRace(err: unknown): boolean {
  const e = err as { message?: string; api_error?: { err_code?: number } };
  return e?.api_error?.err_code === 10071 || /wrong last sequence|key exists/i.test(e?.message ?? "");
}

function stored(entry: KvEntry | null): Stored | undefined {
  if (!entry || entry.operation !== "PUT") return undefined;
  try {
    const v = codec.dec(entry.value) as Partial<Stored>;
    return typeof v.owner === "string"
      ? { owner: v.owner, url: typeof v.url === "string" ? v.url : "", epoch: typeof v.epoch === "number" ? v.epoch : undefined }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Shard leases in a NATS JetStream KV bucket whose TTL is the lease length. Keys: `lease.<n>`
 * (owner, url), `member.<id>` (url), `count`. `create()` wins a free shard and its revision (the
 * stream sequence, strictly increasing over the whole bucket) is the fencing epoch; `update(rev)`
 * renews (writing the epoch into the value); `delete(previousSeq)` releases.
 *
 * Reading: one long-lived watch keeps a cache of every key, rebuilt from a fresh watch every
 * `resyncMs`. NATS 2.9 expires keys by TTL without telling watches, so the cache is reconciled by
 * polling: an entry not rewritten for a TTL is read again (`get`) at every read until it is gone
 * or renewed. A stale cache only delays an acquire
 * (`create()` decides), it never grants a lease.
 */
export async function openNatsLeases(opts: NatsLeasesOptions): Promise<ShardLeases> {
  const ttl = opts.ttlMs;
  const timeout = Math.max(250, Math.min(5_000, Math.floor(ttl / 3)));
  const resyncMs = opts.resyncMs ?? Math.max(10 * ttl, 30_000);
  const nc: NatsConnection = await connect({
    servers: [...(typeof opts.servers === "string" ? [opts.servers] : opts.servers)],
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: Math.max(1_000, ttl),
  });
  let kv: KV;
  try {
    kv = await nc.jetstream({ timeout }).views.kv(opts.bucket, { ttl, history: 1, timeout });
    const status = await kv.status();
    if (status.ttl !== ttl)
      throw new Error(
        `shard lease bucket ${opts.bucket} has a TTL of ${status.ttl} ms, this node ${ttl} ms: every node must run with the same ROUTING_SHARD_LEASE_SECONDS`,
      );
  } catch (err) {
    await nc.close();
    throw err;
  }
  type Cache = Map<string, { entry: KvEntry; seenAt: number }>;
  let cache: Cache = new Map();
  let watcher: QueuedIterator<KvEntry> | undefined;
  let watching = false;
  let syncedAt = 0;
  let syncing: Promise<void> | undefined;
  let claimed: number | undefined;

  /**
   * (Re)builds the cache from a new watch: the last value of every key, then every change. It is
   * swapped in only once complete, and rebuilt every `resyncMs` (or when the watch ended), so a
   * change the old watch missed (a reconnect) cannot stay missing.
   */
  async function sync(): Promise<void> {
    const next: Cache = new Map();
    let initialized: () => void = () => {};
    const ready = new Promise<void>((resolve) => (initialized = resolve));
    const iter = await kv.watch({ key: ">", initializedFn: () => initialized() });
    let ended = false;
    let applied = 0;
    void (async () => {
      try {
        for await (const e of iter) {
          applied++;
          if (e.operation === "PUT") next.set(e.key, { entry: e, seenAt: Date.now() });
          else next.delete(e.key);
        }
      } catch {
        // rebuilt at the next read
      } finally {
        ended = true;
        if (watcher === iter) watching = false;
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const complete = await Promise.race([
      ready.then(async () => {
        // The initial values may still sit in the iterator's queue when it reports initialized.
        while (applied < iter.getReceived() && !ended) await new Promise((r) => setImmediate(r));
        return true;
      }),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeout))),
    ]).finally(() => clearTimeout(timer));
    if (!complete) {
      iter.stop();
      throw new Error(`the shard lease bucket ${opts.bucket} did not answer a watch within ${timeout} ms`);
    }
    const old = watcher;
    watcher = iter;
    cache = next;
    watching = !ended;
    syncedAt = Date.now();
    old?.stop();
  }

  const watch = (): Promise<void> => {
    if (watching && Date.now() - syncedAt < resyncMs) return Promise.resolve();
    return (syncing ??= sync().finally(() => (syncing = undefined)));
  };

  /** The cached entries under `prefix`, each not rewritten for a TTL read again (expiry is not watched). */
  async function read(prefix: string): Promise<KvEntry[]> {
    await watch();
    const suspects = [...cache].filter(([key, c]) => key.startsWith(prefix) && c.seenAt + ttl < Date.now());
    await Promise.all(
      suspects.map(async ([key, c]) => {
        const now = await kv.get(key);
        if (!now || now.operation !== "PUT") cache.delete(key);
        else if (now.revision !== c.entry.revision) cache.set(key, { entry: now, seenAt: Date.now() });
      }),
    );
    return [...cache].filter(([key]) => key.startsWith(prefix)).map(([, c]) => c.entry);
  }

  /** The lease of `shard` if `nodeId` holds it at `epoch`, with its revision. */
  async function held(shard: number, nodeId: string, epoch: number): Promise<{ value: Stored; revision: number } | undefined> {
    const entry = await kv.get(`lease.${shard}`);
    const value = stored(entry);
    if (!entry || !value || value.owner !== nodeId || (value.epoch ?? entry.revision) !== epoch) return undefined;
    return { value, revision: entry.revision };
  }

  return {
    engine: "nats-kv",
    ttlMs: ttl,
    async acquire(shard, node) {
      try {
        const revision = await kv.create(`lease.${shard}`, codec.enc({ owner: node.id, url: node.url }));
        return { shard, owner: node.id, url: node.url, epoch: revision };
      } catch (err) {
        if (lostRace(err)) return undefined;
        throw err;
      }
    },
    async renew(shard, nodeId, epoch) {
      const h = await held(shard, nodeId, epoch);
      if (!h) return false;
      try {
        await kv.update(`lease.${shard}`, codec.enc({ ...h.value, epoch }), h.revision);
        return true;
      } catch (err) {
        if (lostRace(err)) return false;
        throw err;
      }
    },
    async release(shard, nodeId, epoch) {
      const h = await held(shard, nodeId, epoch);
      if (!h) return false;
      try {
        await kv.delete(`lease.${shard}`, { previousSeq: h.revision });
        return true;
      } catch (err) {
        if (lostRace(err)) return false;
        throw err;
      }
    },
    async owners() {
      const out: ShardOwner[] = [];
      for (const e of await read("lease.")) {
        const v = stored(e);
        const shard = Number(e.key.slice("lease.".length));
        if (v && Number.isInteger(shard)) out.push({ shard, owner: v.owner, url: v.url, epoch: v.epoch ?? e.revision });
      }
      return out.sort((a, b) => a.shard - b.shard);
    },
    async heartbeat(node: ShardNode) {
      await kv.put(`member.${node.id}`, codec.enc({ url: node.url }));
      if (claimed !== undefined) await kv.put("count", codec.enc(claimed));
    },
    async leave(nodeId) {
      await kv.delete(`member.${nodeId}`);
    },
    async members() {
      const out: ShardNode[] = [];
      for (const e of await read("member.")) {
        try {
          const v = codec.dec(e.value) as { url?: unknown };
          out.push({ id: e.key.slice("member.".length), url: typeof v.url === "string" ? v.url : "" });
        } catch {
          // not ours
        }
      }
      return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
    async claimShardCount(count) {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await kv.create("count", codec.enc(count));
          claimed = count;
          return count;
        } catch (err) {
          if (!lostRace(err)) throw err;
        }
        const entry = await kv.get("count");
        if (entry && entry.operation === "PUT") {
          const recorded = Number(codec.dec(entry.value));
          if (recorded === count) claimed = count;
          return recorded;
        }
      }
      throw new Error("the shard count record kept changing; try again");
    },
    ready: () => readyWithin(nc.flush()),
    async close() {
      watcher?.stop();
      await nc.close();
    },
  };
}
