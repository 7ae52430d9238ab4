import { PubSub, type Message, type Subscription, type Topic } from "@google-cloud/pubsub";
import type { DeliveryStrategy } from "./nats-signal-bridge.ts";
import type { ShardDirectory } from "../shards/directory.ts";
import type { OwnerReceiver } from "./owner-decision.ts";
import { createPubSubShardSignals } from "./pubsub-shard-signals.ts";
import { encodeSignal, type SignalBridge } from "./signals.ts";

export interface PubSubSignalOptions {
  readonly projectId: string;
  /** host:port of the emulator; undefined for Google Cloud. */
  readonly apiEndpoint?: string;
  readonly instanceId: string;
  readonly strategy: DeliveryStrategy;
  /** The shared broadcast topic, `push-notifications` by default (also the topic of `sharded` signals). */
  readonly broadcastTopic: string;
  /** `sharded`: the shard directory and the owner's receiver (pubsub-shard-signals.ts). */
  readonly sharded?: { readonly shards: ShardDirectory; readonly receive: OwnerReceiver; readonly log?: { warn(obj: object, msg: string): void } };
}

/** Pub/Sub's minimum expiration: a dead instance's subscription is collected after a day idle. */
const EXPIRE_AFTER_IDLE_SECONDS = 24 * 3600;

/**
 * Signals between instances over Google Pub/Sub.
 * - broadcast: one shared topic; each instance creates its own subscription `poke-sub-<instance>`
 *   at start (deleted at stop, expiring if the instance dies) and delivers to its local sessions
 *   or drops.
 * - targeted: each instance owns a topic `delivery-<instance>` and its subscription; the router
 *   publishes to the topics of the instances its presence names. A topic that no longer exists
 *   (instance stopped) counts 0, so the router falls back to a push.
 * Pub/Sub acks the signal once it is handed to local delivery: signals are hints, the mailbox is
 * the durable copy.
 */
export async function createPubSubSignalBridge(opts: PubSubSignalOptions, receive: (text: string) => number): Promise<SignalBridge> {
  const pubsub = new PubSub({ projectId: opts.projectId, ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint, emulatorMode: true } : {}) });
  if (opts.strategy === "sharded") {
    if (opts.sharded === undefined) throw new Error("sharded signals need the shard directory");
    const topic = await ensureTopic(pubsub.topic(opts.broadcastTopic, { batching: { maxMilliseconds: 1 } }));
    const bridge = createPubSubShardSignals({ pubsub, topic, shards: opts.sharded.shards, log: opts.sharded.log }, opts.sharded.receive);
    return {
      signal: bridge.signal,
      async close() {
        await bridge.close();
        await pubsub.close();
      },
    };
  }
  const ownTopicName = opts.strategy === "broadcast" ? opts.broadcastTopic : `delivery-${opts.instanceId}`;
  const ownSubscriptionName = opts.strategy === "broadcast" ? `poke-sub-${opts.instanceId}` : `delivery-${opts.instanceId}-sub`;
  const ownTopic = await ensureTopic(pubsub.topic(ownTopicName));
  const [subscription] = await ownTopic.createSubscription(ownSubscriptionName, {
    expirationPolicy: { ttl: { seconds: EXPIRE_AFTER_IDLE_SECONDS } },
    ackDeadlineSeconds: 10,
    messageRetentionDuration: { seconds: 600 },
  });
  subscription.on("message", (message: Message) => {
    try {
      receive(message.data.toString("utf8"));
    } catch {
      // A malformed signal is dropped; the mailbox still holds the message.
    }
    message.ack();
  });
  subscription.on("error", () => {
    // Reconnects are the client library's; a lost signal only delays until the next fetch.
  });

  const targetTopics = new Map<string, Topic>();
  const topicFor = (instanceId: string): Topic => {
    let topic = targetTopics.get(instanceId);
    if (!topic) targetTopics.set(instanceId, (topic = pubsub.topic(`delivery-${instanceId}`, { batching: { maxMilliseconds: 1 } })));
    return topic;
  };
  const broadcast = pubsub.topic(opts.broadcastTopic, { batching: { maxMilliseconds: 1 } });

  return {
    async signal(_recipient, signal, sessions) {
      const data = Buffer.from(encodeSignal(signal));
      if (opts.strategy === "broadcast") {
        await broadcast.publishMessage({ data });
        return sessions.length;
      }
      const reached = await Promise.all(
        [...new Set(sessions.map((s) => s.instanceId))].map(async (instanceId) => {
          try {
            await topicFor(instanceId).publishMessage({ data });
            return sessions.filter((s) => s.instanceId === instanceId).length;
          } catch {
            return 0;
          }
        }),
      );
      return reached.reduce((a, b) => a + b, 0);
    },
    async close() {
      await subscription.close();
      await deleteQuietly(subscription);
      if (opts.strategy === "targeted") await deleteQuietly(ownTopic);
      await pubsub.close();
    },
  };
}

async function ensureTopic(topic: Topic): Promise<Topic> {
  const [exists] = await topic.exists();
  if (!exists) {
    try {
      await topic.create();
    } catch (err) {
      // Another instance created it in between (ALREADY_EXISTS, gRPC code 6).
      if ((err as { code?: number }).code !== 6) throw err;
    }
  }
  return topic;
}

async function deleteQuietly(resource: Subscription | Topic): Promise<void> {
  try {
    await resource.delete();
  } catch {
    // Already gone.
  }
}
