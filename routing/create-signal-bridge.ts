import type { Config } from "../config/schema.ts";
import { createNatsSignalBridge } from "./nats-signal-bridge.ts";
import { createPubSubSignalBridge } from "./pubsub-signal-bridge.ts";
import { createLocalSignalBridge, createSignalReceiver, type LocalDelivery, type SignalBridge, type SignalCounters } from "./signals.ts";

/** The signal bridge the config names: `local` (one node), `nats` or `pubsub`, each with the delivery strategy. */
export async function createSignalBridge(config: Config, local: LocalDelivery, counters: SignalCounters): Promise<SignalBridge> {
  // Sharded delivery (issue 15) is built on branch issue-15a/15b; until it lands the setting is refused here.
  if (config.deliveryStrategy === "sharded") throw new Error("ROUTING_DELIVERY_STRATEGY=sharded is not available in this build");
  const strategy = config.deliveryStrategy;
  const receive = createSignalReceiver(local, counters);
  switch (config.signals) {
    case "local":
      return createLocalSignalBridge(local);
    case "nats":
      return createNatsSignalBridge({ servers: config.natsUrl, subjectPrefix: config.natsPrefix, instanceId: config.instanceId, strategy }, receive);
    case "pubsub":
      return createPubSubSignalBridge(
        { projectId: config.gcpProjectId, apiEndpoint: config.pubsubEndpoint, instanceId: config.instanceId, strategy, broadcastTopic: config.pubsubSignalTopic },
        receive,
      );
    default:
      throw new Error(`unknown signals type: ${String(config.signals)}`);
  }
}
