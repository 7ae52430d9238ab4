import { PubSub, type Message, type Subscription, type Topic } from "@google-cloud/pubsub";
import type { DeliveryStrategy } from "./nats-signal-bridge.ts";
import type { ShardDirectory } from "../shards/directory.ts";
import type { OwnerReceiver } from "./owner-decision.ts";
import { createPubSubShardSignals } from "./pubsub-shard-signals.ts";
import { createAnswerChannel } from "./pubsub-answers.ts";
import { encodeSignal, signalAsk, type SignalBridge } from "./signals.ts";

export interface PubSubSignalOptions {
  readonly projectId: string;
  /** host:port of the emulator; undefined for Google Cloud. */
  readonly apiEndpoint?: string;
  readonly instanceId: string;
  readonly strategy: DeliveryStrategy;
  /** The shared broadcast topic, `push-notifications` by default (also the topic of `sharded` signals). */
  readonly broadcastTopic: string;
  /** How long a signal waits for the answers of the instances it went to (default 2000 ms). */
  readonly answerWaitMs?: number;
  /** `sharded`: the shard directory and the owner's receiver (pubsub-shard-signals.ts). */
  readonly sharded?: { readonly shards: ShardDirectory; readonly receive: OwnerReceiver; readonly log?: { warn(obj: object, msg: string): void } };
}

/** Pub/Sub's minimum expiration: a dead instance's subscription is collected after a day idle. */
const EXPIRE_AFTER_IDLE_SECONDS = 24 * 3600;

/**
 * Signals between instances over Google Pub/Sub.
 * In both, the instances presence names answer how many sessions they reached, on their answer
 * topics (pubsub-answers.ts); no answer within the wait counts 0, so the router records a push.
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
  const answers = await createAnswerChannel(pubsub, opts.instanceId, opts.answerWaitMs ?? 2000);
  subscription.on("message", (message: Message) => {
    const text = message.data.toString("utf8");
    let reached = 0;
    try {
      reached = receive(text);
    } catch {
      // A malformed signal is dropped; the mailbox still holds the message.
    }
    message.ack();
    const { x, o, c } = signalAsk(text);
    // The named instances answer, and any other that delivered (broadcast: presence may lag behind).
    if (o !== undefined && c !== undefined && (reached > 0 || x?.includes(opts.instanceId))) answers.answer(o, c, reached);
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
    // Reach is what the instances holding the sessions answer (pubsub-answers.ts), never presence's
    // word: a session on an instance that died (its topic and subscription outlive it) counts 0.
    async signal(_recipient, signal, sessions) {
      const instances = [...new Set(sessions.map((s) => s.instanceId))];
      if (opts.strategy === "broadcast") {
        const ask = answers.ask(instances);
        await broadcast.publishMessage({ data: Buffer.from(encodeSignal(signal, { x: instances, o: opts.instanceId, c: ask.correlation })) });
        return ask.reached;
      }
      const reached = await Promise.all(
        instances.map(async (instanceId) => {
          const ask = answers.ask([instanceId]);
          try {
            await topicFor(instanceId).publishMessage({ data: Buffer.from(encodeSignal(signal, { x: [instanceId], o: opts.instanceId, c: ask.correlation })) });
          } catch {
            return 0; // The topic is gone (instance stopped): nobody will answer.
          }
          return ask.reached;
        }),
      );
      return reached.reduce((a, b) => a + b, 0);
    },
    async close() {
      await answers.close();
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
