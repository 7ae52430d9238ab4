import type { PushQueue } from "../backends/push-queue.ts";
import type { Config } from "../config/schema.ts";
import type { ShardDirectory } from "../shards/directory.ts";
import { createNatsSignalBridge } from "./nats-signal-bridge.ts";
import { createOwnerReceiver } from "./owner-decision.ts";
import { createPubSubSignalBridge } from "./pubsub-signal-bridge.ts";
import { createLocalSignalBridge, createSignalReceiver, type LocalDelivery, type SignalBridge, type SignalCounters } from "./signals.ts";

export interface ShardedSignalDeps {
  /** Who owns which shard (the coordinator); required by `sharded` delivery. */
  readonly shards?: ShardDirectory;
  /** Where the owner records a push as due when it decides alone (Pub/Sub). */
  readonly pushQueue?: PushQueue;
  readonly log?: { warn(obj: object, msg: string): void };
}

/** The signal bridge the config names: `local` (one node), `nats` or `pubsub`, each with the delivery strategy. */
export async function createSignalBridge(
  config: Config,
  local: LocalDelivery,
  counters: SignalCounters,
  sharded: ShardedSignalDeps = {},
): Promise<SignalBridge> {
  const strategy = config.deliveryStrategy;
  if (strategy === "sharded" && config.signals !== "local" && sharded.shards === undefined)
    throw new Error("ROUTING_DELIVERY_STRATEGY=sharded needs the shard coordinator");
  const receive = createSignalReceiver(local, counters);
  switch (config.signals) {
    case "local":
      // One node owns every shard: sharded delivery is local delivery.
      return createLocalSignalBridge(local);
    case "nats":
      return createNatsSignalBridge(
        { servers: config.natsUrl, subjectPrefix: config.natsPrefix, instanceId: config.instanceId, strategy, shards: sharded.shards },
        receive,
      );
    case "pubsub": {
      const { shards, pushQueue } = sharded;
      const owner =
        strategy === "sharded" && shards !== undefined && pushQueue !== undefined
          ? { shards, receive: createOwnerReceiver(local, counters, pushQueue), log: sharded.log }
          : undefined;
      if (strategy === "sharded" && owner === undefined) throw new Error("sharded Pub/Sub signals need the shard directory and the push queue");
      return createPubSubSignalBridge(
        {
          projectId: config.gcpProjectId,
          apiEndpoint: config.pubsubEndpoint,
          instanceId: config.instanceId,
          strategy,
          broadcastTopic: config.pubsubSignalTopic,
          sharded: owner,
        },
        receive,
      );
    }
    default:
      throw new Error(`unknown signals type: ${String(config.signals)}`);
  }
}
