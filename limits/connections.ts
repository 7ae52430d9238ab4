import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";

/** A held place among an identity's connections; give it back exactly once when the session ends. */
export interface ConnectionSlot {
  release(): void;
}

/**
 * Live WebSocket + MQTT sessions per identity, across the cluster. `acquire` is called before a
 * WebSocket's 101 or an MQTT CONNACK and throws TOO_MANY_CONNECTIONS when the identity already
 * holds `max`; the slot is released when the connection ends (or the handshake fails after it).
 */
export interface ConnectionLimiter {
  acquire(identity: Urn): Promise<ConnectionSlot>;
  /** Slots this process holds (tests, metrics). */
  held(): number;
  close(): Promise<void>;
}

export interface ConnectionLimitOptions {
  /** 0 switches the limit off. */
  readonly max: number;
  /** Shared by the cluster; absent: this process counts alone (one node). */
  readonly redis?: Redis;
  readonly keyPrefix: string;
  readonly instanceId: string;
  /** A slot whose holder stopped renewing it (a killed node) lapses after this long. */
  readonly ttlMs: number;
}

function refused(max: number): RoutingError {
  return new RoutingError("TOO_MANY_CONNECTIONS", `this identity already holds ${max} connections; close one first`, { retryAfterMs: 1000 });
}

const NOOP_SLOT: ConnectionSlot = { release: () => {} };

export function createConnectionLimiter(options: ConnectionLimitOptions): ConnectionLimiter {
  if (options.max <= 0) return { acquire: () => Promise.resolve(NOOP_SLOT), held: () => 0, close: () => Promise.resolve() };
  return options.redis === undefined ? memoryLimiter(options.max) : redisLimiter(options, options.redis);
}

function memoryLimiter(max: number): ConnectionLimiter {
  const counts = new Map<Urn, number>();
  let held = 0;
  return {
    async acquire(identity) {
      const n = counts.get(identity) ?? 0;
      if (n >= max) throw refused(max);
      counts.set(identity, n + 1);
      held++;
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          held--;
          const left = (counts.get(identity) ?? 1) - 1;
          if (left <= 0) counts.delete(identity);
          else counts.set(identity, left);
        },
      };
    },
    held: () => held,
    close: () => Promise.resolve(),
  };
}

/*
 * One sorted set per identity: member = "<instance>:<slot id>", score = when the slot lapses. The
 * check and the add are one script (atomic), after dropping lapsed members, so two nodes admitting
 * at once cannot both take the last place. Holders renew their members' scores every ttl/3; a
 * killed node's members lapse after ttlMs. Scores use each node's clock (keep clocks in sync).
 */
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1`;

function redisLimiter(options: ConnectionLimitOptions, redis: Redis): ConnectionLimiter {
  const live = new Map<string, { key: string; member: string }>();
  const keyOf = (identity: Urn) => `${options.keyPrefix}conn:${identity}`;
  const renew = setInterval(
    () => {
      if (live.size === 0) return;
      const until = Date.now() + options.ttlMs;
      const pipeline = redis.pipeline();
      for (const { key, member } of live.values()) {
        pipeline.zadd(key, "XX", until, member);
        pipeline.pexpire(key, options.ttlMs);
      }
      // A failed renewal leaves the slots to lapse; the next one repairs nothing lost (they are re-added only by new connections).
      pipeline.exec().catch(() => {});
    },
    Math.max(250, Math.floor(options.ttlMs / 3)),
  );
  renew.unref();

  return {
    async acquire(identity) {
      const key = keyOf(identity);
      const slotId = randomUUID();
      const member = `${options.instanceId}:${slotId}`;
      const now = Date.now();
      let ok: unknown;
      try {
        ok = await redis.eval(ACQUIRE, 1, key, now, options.max, now + options.ttlMs, member, options.ttlMs);
      } catch (err) {
        throw new RoutingError("BACKEND_UNAVAILABLE", "connection limit store unavailable", { cause: err });
      }
      if (ok !== 1) throw refused(options.max);
      live.set(slotId, { key, member });
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          live.delete(slotId);
          redis.zrem(key, member).catch(() => {});
        },
      };
    },
    held: () => live.size,
    async close() {
      clearInterval(renew);
      if (live.size === 0) return;
      const pipeline = redis.pipeline();
      for (const { key, member } of live.values()) pipeline.zrem(key, member);
      live.clear();
      await pipeline.exec().catch(() => {});
    },
  };
}
