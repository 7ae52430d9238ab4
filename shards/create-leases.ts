import type { Config } from "../config/schema.ts";
import type { ShardLeases } from "./leases.ts";
import { createMemoryLeases } from "./memory-leases.ts";
import { openNatsLeases } from "./nats-leases.ts";
import { createRedisLeases } from "./redis-leases.ts";

/** Which engine holds the shard leases of `sharded` delivery (docs/sharding.md). */
export type LeaseEngine = "redis" | "nats-kv" | "in-process";

/**
 * The rule: Redis when the node has Redis (ROUTING_PRESENCE=redis or ROUTING_STORE=redis); else
 * NATS JetStream KV when it has NATS (ROUTING_BUS=nats or ROUTING_SIGNALS=nats); else in-process,
 * which is right only for a single embedded node (ROUTING_SIGNALS=local). A multi-node
 * configuration with neither engine is refused: leases held in each process's memory would let
 * every node own every shard.
 */
export function leaseEngine(config: Pick<Config, "presence" | "store" | "bus" | "signals">): LeaseEngine {
  if (config.presence === "redis" || config.store === "redis") return "redis";
  if (config.bus === "nats" || config.signals === "nats") return "nats-kv";
  if (config.signals === "local") return "in-process";
  throw new Error(
    `ROUTING_DELIVERY_STRATEGY=sharded with ROUTING_SIGNALS=${config.signals} needs an engine for the shard leases: Redis (ROUTING_PRESENCE=redis or ROUTING_STORE=redis) or NATS (ROUTING_BUS=nats or ROUTING_SIGNALS=nats)`,
  );
}

/** Opens the leases the rule names. */
export async function openShardLeases(config: Config): Promise<ShardLeases> {
  const ttlMs = config.shardLeaseSeconds * 1000;
  switch (leaseEngine(config)) {
    case "redis":
      return createRedisLeases({ redis: config.redisUrl, keyPrefix: config.redisPrefix, ttlMs });
    case "nats-kv":
      return openNatsLeases({ servers: config.natsUrl.split(","), bucket: `${config.natsPrefix}_shards`, ttlMs });
    case "in-process":
      return createMemoryLeases({ ttlMs });
  }
}
