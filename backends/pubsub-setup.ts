import type { ClientConfig, PubSub, Topic } from "@google-cloud/pubsub";
import { GRPC_ALREADY_EXISTS, grpcCode } from "./grpc.ts";
import type { BusOptions } from "./ingress-bus.ts";

export interface PubSubIngressBusOptions extends BusOptions {
  readonly projectId: string;
  /** `host:port` of the Pub/Sub emulator; unset means Google's service with Application Default Credentials. */
  readonly emulatorHost?: string;
  /** A non-default endpoint of the real service (e.g. a regional one); ignored with `emulatorHost`. */
  readonly apiEndpoint?: string;
  /** Default "envelope-ingress". */
  readonly topic?: string;
  /** Subscription every instance shares (the work is spread over them); default "envelope-router". */
  readonly subscription?: string;
  /** Default `<topic>-dead`. */
  readonly deadLetterTopic?: string;
  /** Pull subscription `deadLetters` and `stats` read the dead letters from; default `<subscription>-dead`. */
  readonly deadLetterSubscription?: string;
  /** Flow control: messages this instance holds unacked at most; default 256. */
  readonly maxMessages?: number;
  /**
   * The subscription's retry policy, for redeliveries Pub/Sub decides (a consumer closed or died with
   * the record in flight); failed attempts have their own backoff (`retryBaseMs`). Default 1 s .. 30 s.
   */
  readonly redeliveryBackoff?: { readonly minimumMs: number; readonly maximumMs: number };
  /**
   * The subscription's dead-letter policy (5..100): a record delivered this often without being acked
   * or nacked (consumers crashing on it) is forwarded to the dead-letter topic by Pub/Sub. Default 10.
   */
  readonly maxUnsettledDeliveries?: number;
}

/** The topics and subscriptions of one bus. */
export interface Names {
  readonly topic: string;
  readonly subscription: string;
  readonly deadTopic: string;
  readonly deadSubscription: string;
}

export function namesOf(opts: PubSubIngressBusOptions): Names {
  const topic = opts.topic ?? "envelope-ingress";
  const subscription = opts.subscription ?? "envelope-router";
  return {
    topic,
    subscription,
    deadTopic: opts.deadLetterTopic ?? `${topic}-dead`,
    deadSubscription: opts.deadLetterSubscription ?? `${subscription}-dead`,
  };
}

export function clientOptions(opts: PubSubIngressBusOptions): ClientConfig {
  if (opts.emulatorHost === undefined) return { projectId: opts.projectId, apiEndpoint: opts.apiEndpoint };
  // A universe domain given up front keeps the auth library from probing for GCE metadata (seconds, and a warning).
  return { projectId: opts.projectId, apiEndpoint: opts.emulatorHost, emulatorMode: true, universeDomain: "googleapis.com" };
}

export function protoDuration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export async function ensureTopic(topic: Topic): Promise<void> {
  try {
    await topic.create();
  } catch (err) {
    if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
  }
}

export async function ensureSubscription(topic: Topic, name: string, options: Parameters<Topic["createSubscription"]>[1]): Promise<void> {
  try {
    await topic.createSubscription(name, options);
  } catch (err) {
    // Created by another instance (or an earlier run): its settings stand.
    if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
  }
}

/** Creates what is missing of the bus's topics and subscriptions (what exists keeps its settings). */
export async function ensureResources(pubsub: PubSub, opts: PubSubIngressBusOptions): Promise<{ names: Names; topic: Topic; deadTopic: Topic }> {
  const names = namesOf(opts);
  const topic = pubsub.topic(names.topic, { batching: { maxMessages: 100, maxMilliseconds: 5 } });
  const deadTopic = pubsub.topic(names.deadTopic, { batching: { maxMessages: 100, maxMilliseconds: 5 } });
  await Promise.all([ensureTopic(topic), ensureTopic(deadTopic)]);
  const backoff = opts.redeliveryBackoff ?? { minimumMs: 1_000, maximumMs: 30_000 };
  await ensureSubscription(topic, names.subscription, {
    // The client library extends the lease of what it holds; this bounds the wait after a crash.
    ackDeadlineSeconds: 10,
    deadLetterPolicy: {
      deadLetterTopic: deadTopic.name,
      maxDeliveryAttempts: Math.min(100, Math.max(5, opts.maxUnsettledDeliveries ?? 10)),
    },
    retryPolicy: { minimumBackoff: protoDuration(backoff.minimumMs), maximumBackoff: protoDuration(backoff.maximumMs) },
  });
  await ensureSubscription(deadTopic, names.deadSubscription, {
    ackDeadlineSeconds: 10,
    messageRetentionDuration: protoDuration(7 * 24 * 3_600_000),
  });
  return { names, topic, deadTopic };
}
