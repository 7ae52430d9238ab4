import type { Config } from "../config/schema.ts";
import { createNatsSignalBridge } from "./nats-signal-bridge.ts";
import { createPubSubSignalBridge } from "./pubsub-signal-bridge.ts";
import { createLocalSignalBridge, createSignalReceiver, type LocalDelivery, type SignalBridge, type SignalCounters } from "./signals.ts";

/** The signal bridge the config names: `local` (one node), `nats` or `pubsub`, each with the delivery strategy. */
export async function createSignalBridge(config: Config, local: LocalDelivery, counters: SignalCounters): Promise<SignalBridge> {
  const receive = createSignalReceiver(local, counters);
  switch (config.signals) {
    case "local":
      return createLocalSignalBridge(local);
    case "nats":
      return createNatsSignalBridge({ servers: config.natsUrl, subjectPrefix: config.natsPrefix, instanceId: config.instanceId, strategy: config.deliveryStrategy }, receive);
    case "pubsub":
      return createPubSubSignalBridge(
        { projectId: config.gcpProjectId, apiEndpoint: config.pubsubEndpoint, instanceId: config.instanceId, strategy: config.deliveryStrategy, broadcastTopic: config.pubsubSignalTopic },
        receive,
      );
    default:
      throw new Error(`unknown signals type: ${String(config.signals)}`);
  }
}
