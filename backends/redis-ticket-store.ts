import { Redis } from "ioredis";
import { unavailable } from "../core/errors.ts";
import { readyWithin } from "./readiness.ts";
import { grantAt, parseStoredTicket, type TicketStore } from "./ticket-store.ts";

export interface RedisTicketOptions {
  /** A `redis://` URL (the store opens and closes its own connection) or a client the caller owns. */
  readonly redis: string | Redis;
  /** Prepended to every key (e.g. "routing:"). */
  readonly keyPrefix?: string;
}

/**
 * Tickets shared by every node of a cluster: `SET key grant PX ttl` to issue, `GETDEL` to redeem
 * (atomic, so exactly one node gets a ticket). The key's TTL (one second past the ticket's expiry)
 * only cleans up; validity is decided against the caller's clock from the stored `expiresAt`.
 */
export function createRedisTicketStore(opts: RedisTicketOptions): TicketStore {
  const owned = typeof opts.redis === "string";
  const redis = typeof opts.redis === "string" ? new Redis(opts.redis, { maxRetriesPerRequest: 1, connectTimeout: 5_000, lazyConnect: false }) : opts.redis;
  const prefix = `${opts.keyPrefix ?? ""}ticket:`;
  let open = true;
  if (owned) redis.on("error", () => {});
  return {
    async put(key, grant, expiresAt) {
      const ttlMs = Math.max(1, expiresAt - Date.now()) + 1_000;
      try {
        await redis.set(prefix + key, JSON.stringify({ ...grant, expiresAt }), "PX", ttlMs);
      } catch (err) {
        throw unavailable("ticket put failed", err);
      }
    },
    async take(key, now) {
      let raw: string | null;
      try {
        raw = await redis.getdel(prefix + key);
      } catch (err) {
        throw unavailable("ticket take failed", err);
      }
      return grantAt(parseStoredTicket(raw), now);
    },
    ready: () => (open ? readyWithin(redis.ping().then(() => true)) : Promise.resolve(false)),
    async close() {
      if (!open) return;
      open = false;
      if (owned) await redis.quit().catch(() => redis.disconnect());
    },
  };
}
