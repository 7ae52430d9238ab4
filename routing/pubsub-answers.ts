import { randomUUID } from "node:crypto";
import type { Message, PubSub, Subscription, Topic } from "@google-cloud/pubsub";

/** Pub/Sub's minimum expiration: a dead instance's answer subscription is collected after a day idle. */
const EXPIRE_AFTER_IDLE_SECONDS = 24 * 3600;

export const answerTopicName = (instanceId: string): string => `signal-answers-${instanceId}`;

/**
 * Answers to signals over Pub/Sub, which has no request/reply: each instance owns a topic
 * `signal-answers-<instance>` (deleted at stop, its subscription expiring if the instance dies).
 * The instance that signals asks the instances presence names to answer (`ask`); each answers how
 * many sessions it reached (`answer`). An instance that does not answer within the wait (it died,
 * or its topic is gone) counts 0, so the router records a push instead of counting a session that
 * no longer exists.
 */
export async function createAnswerChannel(pubsub: PubSub, instanceId: string, waitMs: number) {
  const ownTopic = pubsub.topic(answerTopicName(instanceId));
  const [exists] = await ownTopic.exists();
  if (!exists) await ownTopic.create();
  const [subscription]: [Subscription, ...unknown[]] = await ownTopic.createSubscription(`${answerTopicName(instanceId)}-sub`, {
    expirationPolicy: { ttl: { seconds: EXPIRE_AFTER_IDLE_SECONDS } },
    ackDeadlineSeconds: 10,
    messageRetentionDuration: { seconds: 600 },
  });
  const pending = new Map<string, { remaining: Set<string>; reached: number; done: (n: number) => void }>();
  subscription.on("message", (message: Message) => {
    message.ack();
    try {
      const { c, i, n } = JSON.parse(message.data.toString("utf8")) as { c: string; i: string; n: number };
      const waiting = pending.get(c);
      if (waiting === undefined) return;
      // An instance presence did not name may answer too (broadcast: it delivered all the same).
      waiting.remaining.delete(i);
      waiting.reached += Number(n) || 0;
      if (waiting.remaining.size === 0) waiting.done(waiting.reached);
    } catch {
      // Not an answer: ignored.
    }
  });
  subscription.on("error", () => {
    // Reconnects are the client library's; a missing answer counts 0 after the wait.
  });

  const topics = new Map<string, Topic>();
  const topicOf = (id: string): Topic => {
    let topic = topics.get(id);
    if (!topic) topics.set(id, (topic = pubsub.topic(answerTopicName(id), { batching: { maxMilliseconds: 1 } })));
    return topic;
  };

  return {
    /** A correlation id for a signal expecting answers from `instances`, and the sum of what they answer (at most `waitMs`). */
    ask(instances: readonly string[]): { correlation: string; reached: Promise<number> } {
      const correlation = randomUUID();
      const reached = new Promise<number>((resolve) => {
        const timer = setTimeout(() => finish(entry.reached), waitMs);
        const finish = (n: number) => {
          clearTimeout(timer);
          pending.delete(correlation);
          resolve(n);
        };
        const entry = { remaining: new Set(instances), reached: 0, done: finish };
        pending.set(correlation, entry);
        if (instances.length === 0) finish(0);
      });
      return { correlation, reached };
    },
    /** Tells the signalling instance how many sessions this one reached (best effort). */
    answer(origin: string, correlation: string, reached: number): void {
      topicOf(origin)
        .publishMessage({ data: Buffer.from(JSON.stringify({ c: correlation, i: instanceId, n: reached })) })
        .catch(() => {});
    },
    async close(): Promise<void> {
      for (const waiting of pending.values()) waiting.done(waiting.reached);
      await subscription.close();
      await subscription.delete().catch(() => {});
      await ownTopic.delete().catch(() => {});
    },
  };
}

export type AnswerChannel = Awaited<ReturnType<typeof createAnswerChannel>>;
