import { Redis } from "ioredis";
import type { IngressBus } from "../backends/ingress-bus.ts";
import type { Config } from "../config/schema.ts";
import { createConnectionLimiter, type ConnectionLimiter } from "./connections.ts";
import { createIngressGate, type IngressGate } from "./ingress-gate.ts";
import { createSendRateLimiter, type SendRateLimiter } from "./rate.ts";

export type { ConnectionLimiter, ConnectionSlot } from "./connections.ts";
export type { IngressGate } from "./ingress-gate.ts";
export type { SendRateLimiter } from "./rate.ts";

/** Every per-node limit of the "Limits and overload" contract section (docs/limits.md). */
export interface Limits {
  readonly rate: SendRateLimiter;
  readonly gate: IngressGate;
  readonly connections: ConnectionLimiter;
  /** Where the per-identity counts live: "redis" (the whole cluster) or "memory" (this node). */
  readonly store: "redis" | "memory";
  close(): Promise<void>;
}

/** The cluster has Redis when presence or the store uses it; then identity limits count there. */
export function limitsUseRedis(config: Config): boolean {
  return config.presence === "redis" || config.store === "redis";
}

export function createLimits(config: Config, bus: IngressBus): Limits {
  const needsRedis = limitsUseRedis(config) && (config.sendRatePerSecond > 0 || config.maxConnectionsPerIdentity > 0);
  // Its own connection: a blocked limit call never queues behind mailbox or presence traffic.
  const redis = needsRedis ? new Redis(config.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 5_000 }) : undefined;
  redis?.on("error", () => {
    // Reported through the calls that fail (insurance limiter, BACKEND_UNAVAILABLE); ioredis reconnects.
  });
  const keyPrefix = `${config.redisPrefix}limits:`;
  const connections = createConnectionLimiter({
    max: config.maxConnectionsPerIdentity,
    redis,
    keyPrefix,
    instanceId: config.instanceId,
    ttlMs: config.presenceTtlSeconds * 1000,
  });
  return {
    rate: createSendRateLimiter({ ratePerSecond: config.sendRatePerSecond, burst: config.sendBurst, redis, keyPrefix }),
    gate: createIngressGate({
      maxPending: config.ingressMaxPending,
      backlog: async () => (await bus.stats()).backlog,
      backlogNow: bus.backlogNow === undefined ? undefined : () => bus.backlogNow?.() ?? 0,
    }),
    connections,
    store: redis === undefined ? "memory" : "redis",
    async close() {
      await connections.close();
      redis?.disconnect();
    },
  };
}
