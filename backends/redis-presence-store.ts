import { Redis } from "ioredis";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { PresenceEntry, PresenceOptions, PresenceStore, SessionProtocol } from "./presence-store.ts";
import { readyWithin } from "./readiness.ts";

export interface RedisPresenceOptions extends PresenceOptions {
  /**
   * A `redis://` URL (the store opens its own connection and closes it on `close`) or a client the
   * caller owns (shared with other roles; never closed here). A single Redis or a Sentinel-managed
   * primary: the store writes several keys per MULTI, which Redis Cluster would refuse across slots.
   */
  readonly redis: string | Redis;
  /** Prepended to every key, so deployments can share one Redis (e.g. "routing:"). Default "". */
  readonly keyPrefix?: string;
  /** Dead instances swept per heartbeat; default 8. */
  readonly sweepBatch?: number;
}

/**
 * Presence shared by every instance, in Redis. Keys (after the prefix):
 * - `presence:<urn>`: hash sessionId -> JSON {instanceId, protocol, connectedAt}; many sessions per identity.
 * - `instance:<id>`: the instance's liveness, a key with a TTL of `ttlMs` that `heartbeat` (and `add`)
 *   sets again: one write per instance, whatever its number of sessions.
 * - `instance-sessions:<id>`: set of the instance's sessions (JSON [urn, sessionId]), so a dead
 *   instance's entries can be removed without scanning every identity.
 * - `instances`: sorted set instanceId -> last heartbeat (ms), to find instances that may have died.
 *
 * Expiry is Redis's clock (key TTLs), not an injected one. `get` returns only sessions whose
 * instance key is still there and deletes the others on the way (no ghost presence beyond one TTL);
 * heartbeats also sweep instances that stopped beating. An instance that missed its TTL is dead:
 * its sessions are gone and must be added again.
 */
export function createRedisPresenceStore(opts: RedisPresenceOptions): PresenceStore {
  return new RedisPresenceStore(opts);
}

/** For a connection the store owns: fail fast rather than queue commands while Redis is away. */
const CLIENT_OPTIONS = { maxRetriesPerRequest: 1, connectTimeout: 5_000 } as const;

/** Deletes a session only while the given instance still holds it (an `add` elsewhere may have replaced it). */
const DELETE_IF_HELD = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local ok, entry = pcall(cjson.decode, raw)
if ok and type(entry) == 'table' and entry.instanceId ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`;

interface StoredEntry {
  readonly instanceId: string;
  readonly protocol: SessionProtocol;
  readonly connectedAt: number;
}

function parseEntry(sessionId: string, raw: string): PresenceEntry | undefined {
  try {
    const v = JSON.parse(raw) as Partial<StoredEntry>;
    if (typeof v.instanceId !== "string" || typeof v.connectedAt !== "number") return undefined;
    if (v.protocol !== "ws" && v.protocol !== "mqtt" && v.protocol !== "sse") return undefined;
    return { sessionId, instanceId: v.instanceId, protocol: v.protocol, connectedAt: v.connectedAt };
  } catch {
    return undefined;
  }
}

function member(urn: Urn, sessionId: string): string {
  return JSON.stringify([urn, sessionId]);
}

function parseMember(raw: string): [Urn, string] | undefined {
  try {
    const v = JSON.parse(raw) as unknown;
    return Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string" ? [v[0] as Urn, v[1]] : undefined;
  } catch {
    return undefined;
  }
}

class RedisPresenceStore implements PresenceStore {
  #redis: Redis;
  #owned: boolean;
  #prefix: string;
  #ttlMs: number;
  #sweepBatch: number;
  #open = true;

  constructor(opts: RedisPresenceOptions) {
    this.#owned = typeof opts.redis === "string";
    this.#redis = typeof opts.redis === "string" ? new Redis(opts.redis, CLIENT_OPTIONS) : opts.redis;
    this.#prefix = opts.keyPrefix ?? "";
    this.#ttlMs = opts.ttlMs;
    this.#sweepBatch = opts.sweepBatch ?? 8;
  }

  add(urn: Urn, entry: PresenceEntry): Promise<void> {
    return this.#guard("presence add", async () => {
      const stored: StoredEntry = { instanceId: entry.instanceId, protocol: entry.protocol, connectedAt: entry.connectedAt };
      const previous = await this.#redis.hget(this.#presenceKey(urn), entry.sessionId);
      const tx = this.#redis.multi();
      const moved = previous === null ? undefined : parseEntry(entry.sessionId, previous);
      if (moved !== undefined && moved.instanceId !== entry.instanceId) {
        tx.srem(this.#sessionsKey(moved.instanceId), member(urn, entry.sessionId));
      }
      tx.hset(this.#presenceKey(urn), entry.sessionId, JSON.stringify(stored));
      tx.sadd(this.#sessionsKey(entry.instanceId), member(urn, entry.sessionId));
      // The instance is evidently alive: its entry counts from now, like a heartbeat.
      tx.set(this.#instanceKey(entry.instanceId), "1", "PX", this.#ttlMs);
      tx.zadd(this.#instancesKey(), Date.now(), entry.instanceId);
      await exec(tx);
    });
  }

  remove(urn: Urn, sessionId: string): Promise<void> {
    return this.#guard("presence remove", async () => {
      const previous = await this.#redis.hget(this.#presenceKey(urn), sessionId);
      if (previous === null) return;
      const tx = this.#redis.multi().hdel(this.#presenceKey(urn), sessionId);
      const held = parseEntry(sessionId, previous);
      if (held !== undefined) tx.srem(this.#sessionsKey(held.instanceId), member(urn, sessionId));
      await exec(tx);
    });
  }

  get(urn: Urn): Promise<PresenceEntry[]> {
    return this.#guard("presence get", async () => {
      const all = await this.#redis.hgetall(this.#presenceKey(urn));
      const entries: PresenceEntry[] = [];
      const broken: string[] = [];
      for (const [sessionId, raw] of Object.entries(all)) {
        const entry = parseEntry(sessionId, raw);
        if (entry === undefined) broken.push(sessionId);
        else entries.push(entry);
      }
      const instances = [...new Set(entries.map((e) => e.instanceId))];
      const alive = await this.#aliveInstances(instances);
      const live = entries.filter((e) => alive.has(e.instanceId));
      const dead = entries.filter((e) => !alive.has(e.instanceId));
      if (dead.length > 0 || broken.length > 0) {
        // Rare (once per dead session), so the script is sent as text rather than cached by sha.
        const pipe = this.#redis.pipeline();
        for (const e of dead) {
          pipe.eval(DELETE_IF_HELD, 1, this.#presenceKey(urn), e.sessionId, e.instanceId);
          pipe.srem(this.#sessionsKey(e.instanceId), member(urn, e.sessionId));
        }
        if (broken.length > 0) pipe.hdel(this.#presenceKey(urn), ...broken);
        await runPipeline(pipe);
      }
      return live;
    });
  }

  heartbeat(instanceId: string): Promise<void> {
    return this.#guard("presence heartbeat", async () => {
      await exec(this.#redis.multi().set(this.#instanceKey(instanceId), "1", "PX", this.#ttlMs).zadd(this.#instancesKey(), Date.now(), instanceId));
      await this.#sweep(instanceId);
    });
  }

  /** Drops the liveness key (readers filter the instance's sessions out at once), then its entries. */
  release(instanceId: string): Promise<void> {
    return this.#guard("presence release", async () => {
      await this.#redis.del(this.#instanceKey(instanceId));
      await this.#purgeInstance(instanceId);
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

  /**
   * Removes every session of instances whose liveness key is gone. The registry's scores come from
   * the instances' own clocks, so they only nominate candidates; the key's absence decides.
   */
  async #sweep(self: string): Promise<void> {
    const candidates = await this.#redis.zrangebyscore(this.#instancesKey(), "-inf", `(${Date.now() - this.#ttlMs}`, "LIMIT", 0, this.#sweepBatch);
    const others = candidates.filter((id) => id !== self);
    const alive = await this.#aliveInstances(others);
    for (const id of others) if (!alive.has(id)) await this.#purgeInstance(id);
  }

  async #purgeInstance(instanceId: string): Promise<void> {
    const setKey = this.#sessionsKey(instanceId);
    let cursor = "0";
    do {
      const [next, members] = await this.#redis.sscan(setKey, cursor, "COUNT", 500);
      cursor = next;
      const pipe = this.#redis.pipeline();
      for (const [urn, sessionId] of members.map(parseMember).filter((m) => m !== undefined)) {
        pipe.eval(DELETE_IF_HELD, 1, this.#presenceKey(urn), sessionId, instanceId);
      }
      await runPipeline(pipe);
    } while (cursor !== "0");
    // Revived meanwhile (a late heartbeat): keep its index.
    if ((await this.#redis.exists(this.#instanceKey(instanceId))) === 1) return;
    await exec(this.#redis.multi().del(setKey).zrem(this.#instancesKey(), instanceId));
  }

  async #aliveInstances(instanceIds: readonly string[]): Promise<Set<string>> {
    if (instanceIds.length === 0) return new Set();
    const pipe = this.#redis.pipeline();
    for (const id of instanceIds) pipe.exists(this.#instanceKey(id));
    const results = (await pipe.exec()) ?? [];
    const alive = new Set<string>();
    results.forEach(([err, value], i) => {
      if (err) throw err;
      if (value === 1) alive.add(instanceIds[i]);
    });
    return alive;
  }

  #presenceKey(urn: Urn): string {
    return `${this.#prefix}presence:${urn}`;
  }
  #instanceKey(instanceId: string): string {
    return `${this.#prefix}instance:${instanceId}`;
  }
  #sessionsKey(instanceId: string): string {
    return `${this.#prefix}instance-sessions:${instanceId}`;
  }
  #instancesKey(): string {
    return `${this.#prefix}instances`;
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

async function runPipeline(pipe: ReturnType<Redis["pipeline"]>): Promise<void> {
  for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
}

/** EXEC, failing if the transaction or any command in it failed. */
async function exec(tx: ReturnType<Redis["multi"]>): Promise<void> {
  const results = await tx.exec();
  if (results === null) throw new Error("redis transaction aborted");
  for (const [err] of results) if (err) throw err;
}
