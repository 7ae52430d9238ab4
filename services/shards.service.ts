import type { ShardDirectory } from "../shards/directory.ts";
import { createShardCoordinator, type CoordinatorOptions, type ShardCoordinator } from "../shards/coordinator.ts";
import type { PartSchema } from "../platform/lifecycle.ts";

export interface ShardsService {
  readonly schema: PartSchema;
  /** What the gateway, MQTT broker, signal bridges and router ask (valid before the service starts: it owns nothing yet). */
  readonly directory: ShardDirectory;
  /** Started, not draining, and the lease engine answered the last poll (readiness). */
  ready(): boolean;
  readonly coordinator: ShardCoordinator;
}

/**
 * Hosts this node's shard coordinator (sharded delivery, docs/sharding.md): one ownership actor per
 * shard plus the poll of the lease engine. `started` refuses a node whose ROUTING_SHARD_COUNT
 * differs from the cluster's, then joins and takes its shards. The drain begins the handover at
 * once (the node stops acting as owner, releases every lease and leaves the membership), so other
 * nodes own its shards within one poll; `stopped` waits for that and closes the engine connection.
 * `shards.list` answers the REPL's `shards` command.
 */
export function createShardsService(opts: CoordinatorOptions): ShardsService {
  const coordinator = createShardCoordinator(opts);
  const schema: PartSchema = {
    name: "shards",
    actions: {
      list: {
        // A fresh read of the engine (the last view when it cannot be reached: `healthy` says which).
        handler: async () => {
          await coordinator.poll();
          return coordinator.view();
        },
      },
    },
    async started() {
      await coordinator.start();
    },
    draining() {
      coordinator.drain().catch((err: unknown) => opts.log?.warn({ err }, "shard handover failed; the leases lapse by TTL"));
    },
    async stopped() {
      await coordinator.close();
    },
  };
  return { schema, directory: coordinator, ready: () => coordinator.ready(), coordinator };
}
