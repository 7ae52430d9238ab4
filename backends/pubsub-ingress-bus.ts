import { randomUUID } from "node:crypto";
import { Duration, PubSub, protos, v1, type ClientConfig, type Message, type Subscription, type Topic } from "@google-cloud/pubsub";
import { RoutingError } from "../core/errors.ts";
import { decodeRecord, HeldDeliveries, type Held } from "./held-deliveries.ts";
import {
  type BusOptions,
  type BusRecord,
  type BusStats,
  type BusSubscription,
  type DeadLetter,
  type Delivery,
  type IngressBus,
} from "./ingress-bus.ts";

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

/**
 * Opens (creating if missing) the topics and subscriptions, then the bus.
 *
 * - `publish` resolves once Pub/Sub acknowledged the message: it is stored, replicated across zones.
 * - Failed attempts are counted by this module, not with `message.deliveryAttempt`: Pub/Sub counts
 *   every delivery, also those a consumer returned by closing or dying, while the interface counts
 *   nacks only; and the dead letter must carry the nack's reason. A nack publishes the record again
 *   with its failure count and time as attributes, then acks the delivery (a crash between the two
 *   leaves one more copy: consumers de-duplicate). The backoff is applied by whichever instance
 *   receives the copy, with its own `retryBaseMs`, holding it (the client library extends its lease)
 *   until due. After `maxAttempts` failures the record goes, with attempts and reason, to the
 *   dead-letter topic, then the delivery is acked.
 * - The subscription also has a Pub/Sub dead-letter policy (`maxUnsettledDeliveries`) and a retry
 *   policy (`redeliveryBackoff`): they only act on deliveries nobody settles. The emulator (0.8)
 *   honours the dead-letter policy and `deliveryAttempt`. On the real service the Pub/Sub service
 *   account needs publisher rights on the dead-letter topic and subscriber rights on the subscription.
 * - Acks are Pub/Sub's: best effort without exactly-once delivery; a lost ack means a redelivery.
 * - `stats`: Pub/Sub's API has no backlog count (Cloud Monitoring's `num_undelivered_messages` and
 *   `oldest_unacked_message_age` have it, minutes late), so `backlog` and `oldestUnackedAgeMs` cover
 *   only the records this instance holds (received, not settled). `deadLetters` counts the
 *   dead-letter subscription by pulling it without acking (up to 1000); `deadLetters()` lists them
 *   the same way. Dead letters are kept for the subscription's retention (7 days).
 */
export async function openPubSubIngressBus(opts: PubSubIngressBusOptions): Promise<IngressBus> {
  const pubsub = new PubSub(clientOptions(opts));
  try {
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
    // For synchronous pulls of the dead letters, on the same endpoint and credentials.
    const config = await pubsub.getClientConfig();
    const admin = new v1.SubscriberClient({ ...config, port: config.port === undefined ? undefined : Number(config.port) });
    return new PubSubIngressBus(pubsub, admin, topic, deadTopic, names, opts);
  } catch (err) {
    await pubsub.close().catch(() => undefined);
    throw unavailable("ingress bus: Pub/Sub is not available", err);
  }
}

interface Names {
  readonly topic: string;
  readonly subscription: string;
  readonly deadTopic: string;
  readonly deadSubscription: string;
}

function namesOf(opts: PubSubIngressBusOptions): Names {
  const topic = opts.topic ?? "envelope-ingress";
  const subscription = opts.subscription ?? "envelope-router";
  return {
    topic,
    subscription,
    deadTopic: opts.deadLetterTopic ?? `${topic}-dead`,
    deadSubscription: opts.deadLetterSubscription ?? `${subscription}-dead`,
  };
}

function clientOptions(opts: PubSubIngressBusOptions): ClientConfig {
  if (opts.emulatorHost === undefined) return { projectId: opts.projectId, apiEndpoint: opts.apiEndpoint };
  // A universe domain given up front keeps the auth library from probing for GCE metadata (seconds, and a warning).
  return { projectId: opts.projectId, apiEndpoint: opts.emulatorHost, emulatorMode: true, universeDomain: "googleapis.com" };
}

/** Record attributes on the ingress topic. */
const ENQUEUED_AT = "enqueuedAt";
const FAILURES = "failures";
const FAILED_AT = "failedAt";
/** Tells a retry copy this instance published when it comes back (see #release). */
const COPY_ID = "copyId";
/** Marks a dead letter this module wrote (others were forwarded by the subscription's policy). */
const KIND = "routing";
const DEAD_LETTER = "dead-letter";
/**
 * A closing consumer waits until no message has reached its stream for this long, and its own
 * recent retry copies have (at most DRAIN_MAX_MS): a message still on the wire when the stream
 * closes stays leased to it until its ack deadline (10 s or more) instead of going to the next consumer.
 */
const DRAIN_QUIET_MS = 200;
const DRAIN_MAX_MS = 1_000;
/** Dead letters counted / listed at most. */
const PEEK_LIMIT = 1_000;
const GRPC_NOT_FOUND = 5;
const GRPC_ALREADY_EXISTS = 6;

function unavailable(what: string, cause?: unknown): RoutingError {
  return new RoutingError("BACKEND_UNAVAILABLE", what, cause === undefined ? undefined : { cause });
}

function grpcCode(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "number" ? err.code : undefined;
}

function protoDuration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

async function ensureTopic(topic: Topic): Promise<void> {
  try {
    await topic.create();
  } catch (err) {
    if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
  }
}

async function ensureSubscription(topic: Topic, name: string, options: Parameters<Topic["createSubscription"]>[1]): Promise<void> {
  try {
    await topic.createSubscription(name, options);
  } catch (err) {
    // Created by another instance (or an earlier run): its settings stand.
    if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
  }
}

function numberAttribute(message: Message, name: string): number | undefined {
  const raw = message.attributes[name];
  const n = raw ? Number(raw) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** A dead letter as read back: ours carry the JSON DeadLetter; the policy's carry the record and a count. */
function deadLetterOf(received: protos.google.pubsub.v1.IReceivedMessage): DeadLetter | undefined {
  const m = received.message;
  if (!m?.data) return undefined;
  const data = Buffer.from(m.data);
  const attributes = m.attributes ?? {};
  const id = m.messageId ?? "";
  if (attributes[KIND] === DEAD_LETTER) {
    try {
      return { ...(JSON.parse(data.toString("utf8")) as Omit<DeadLetter, "id">), id };
    } catch {
      return undefined;
    }
  }
  const record = decodeRecord(data.toString("utf8"));
  if (record === undefined) return undefined;
  const deliveries = Number(attributes.CloudPubSubDeadLetterSourceDeliveryCount ?? 0);
  const seconds = Number(m.publishTime?.seconds ?? 0);
  return {
    id,
    record,
    attempts: Number(attributes[FAILURES] ?? 0),
    reason: `delivered ${deliveries} times without being settled (Pub/Sub dead-letter policy)`,
    deadAt: seconds * 1000 + Math.floor((m.publishTime?.nanos ?? 0) / 1e6),
  };
}

interface LocalConsumer {
  readonly deliveries: HeldDeliveries<Message>;
  readonly subscription: Subscription;
  /** When the stream last brought a message (epoch ms). */
  lastArrival: number;
  /** Retry copies this consumer published and has not seen arrive: copyId -> published at (epoch ms). */
  readonly copies: Map<string, number>;
}

class PubSubIngressBus implements IngressBus {
  #pubsub: PubSub;
  #admin: v1.SubscriberClient;
  #topic: Topic;
  #deadTopic: Topic;
  #subscriptionName: string;
  #deadSubscriptionPath: string;
  #maxAttempts: number;
  #retryBaseMs: number;
  #maxMessages: number;
  #local: LocalConsumer | undefined;
  /** Retries and dead-letterings under way: stats and close wait for them. */
  #settling = new Set<Promise<unknown>>();
  /** Peeks run one at a time: a second one would not see what the first holds leased. */
  #peeking: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(pubsub: PubSub, admin: v1.SubscriberClient, topic: Topic, deadTopic: Topic, names: Names, opts: PubSubIngressBusOptions) {
    this.#pubsub = pubsub;
    this.#admin = admin;
    this.#topic = topic;
    this.#deadTopic = deadTopic;
    this.#subscriptionName = names.subscription;
    this.#deadSubscriptionPath = pubsub.subscription(names.deadSubscription).name;
    this.#maxAttempts = opts.maxAttempts;
    this.#retryBaseMs = opts.retryBaseMs;
    this.#maxMessages = opts.maxMessages ?? 256;
  }

  async publish(record: BusRecord): Promise<void> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    try {
      await this.#topic.publishMessage({ data: Buffer.from(JSON.stringify(record)), attributes: { [ENQUEUED_AT]: String(Date.now()) } });
    } catch (err) {
      throw unavailable("ingress bus: publish failed", err);
    }
  }

  consume(handler: (delivery: Delivery) => void): BusSubscription {
    if (this.#closed) throw unavailable("ingress bus: closed");
    if (this.#local !== undefined) throw new Error("ingress bus: one consumer per bus instance");
    const subscription = this.#pubsub.subscription(this.#subscriptionName, {
      flowControl: { maxMessages: this.#maxMessages, allowExcessMessages: false },
      batching: { maxMessages: 100, maxMilliseconds: 10 },
      maxExtensionTime: Duration.from({ minutes: 60 }),
    });
    const c: LocalConsumer = {
      deliveries: new HeldDeliveries<Message>({
        handler,
        retryBaseMs: this.#retryBaseMs,
        ack: (h) => this.#ack(h),
        nack: (h, reason) => this.#nack(c, h, reason),
      }),
      subscription,
      lastArrival: 0,
      copies: new Map(),
    };
    this.#local = c;
    subscription.on("message", (message: Message) => this.#accept(c, message));
    // The client library reconnects by itself; an error here is informational.
    subscription.on("error", () => undefined);
    return c.deliveries.subscription(() => this.#release(c));
  }

  /** What `stats()` counts as the backlog (the records this instance holds), without its dead-letter peek. */
  backlogNow(): number {
    return this.#local?.deliveries.held.size ?? 0;
  }

  async stats(): Promise<BusStats> {
    await Promise.allSettled([...this.#settling]);
    let backlog = 0;
    let inFlight = 0;
    let oldest: number | undefined;
    for (const h of this.#local?.deliveries.held ?? []) {
      backlog++;
      if (h.state === "inflight") inFlight++;
      if (oldest === undefined || h.enqueuedAt < oldest) oldest = h.enqueuedAt;
    }
    let deadLetters: number;
    try {
      deadLetters = (await this.#peekDeadLetters()).length;
    } catch (err) {
      throw unavailable("ingress bus: stats unavailable", err);
    }
    return { backlog, inFlight, deadLetters, oldestUnackedAgeMs: oldest === undefined ? 0 : Math.max(0, Date.now() - oldest) };
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    try {
      const dead = await this.#peekDeadLetters();
      return dead.sort((a, b) => b.deadAt - a.deadAt).slice(0, limit);
    } catch (err) {
      throw unavailable("ingress bus: dead letters unavailable", err);
    }
  }

  async ready(): Promise<boolean> {
    if (this.#closed) return false;
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref());
    const reachable = this.#topic.exists().then(([exists]) => exists, () => false);
    return Promise.race([reachable, timeout]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local !== undefined) await this.#release(this.#local);
    await Promise.allSettled([...this.#settling]);
    await this.#peeking.catch(() => undefined);
    await Promise.allSettled([this.#topic.flush(), this.#deadTopic.flush()]);
    await this.#admin.close().catch(() => undefined);
    await this.#pubsub.close().catch(() => undefined);
  }

  /**
   * Every dead letter (up to PEEK_LIMIT), read by pulling the dead-letter subscription and handing
   * the messages straight back (ack deadline 0): they stay for the next reader.
   */
  #peekDeadLetters(): Promise<DeadLetter[]> {
    return this.#pullDeadLetters(async () => new Set<string>());
  }

  /**
   * The named dead letters (Pub/Sub message ids) are found by pulling the dead-letter subscription;
   * each is published to the ingress topic again, and only then acked (removed): a failure between
   * the two leaves a dead letter that was also replayed, which consumers de-duplicate.
   */
  async replayDeadLetters(ids: readonly string[]): Promise<number> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    const wanted = new Set(ids);
    let replayed = 0;
    try {
      await this.#pullDeadLetters(async (letters) => {
        const done = new Set<string>();
        for (const letter of letters) {
          if (!wanted.has(letter.id) || done.has(letter.id)) continue;
          await this.#topic.publishMessage({ data: Buffer.from(JSON.stringify(letter.record)), attributes: { [ENQUEUED_AT]: String(Date.now()) } });
          done.add(letter.id);
        }
        replayed = done.size;
        return done;
      });
    } catch (err) {
      throw unavailable("ingress bus: replay failed", err);
    }
    return replayed;
  }

  async dropDeadLetters(ids: readonly string[]): Promise<number> {
    const wanted = new Set(ids);
    let dropped = 0;
    try {
      await this.#pullDeadLetters(async (letters) => {
        const done = new Set(letters.filter((l) => wanted.has(l.id)).map((l) => l.id));
        dropped = done.size;
        return done;
      });
    } catch (err) {
      throw unavailable("ingress bus: dropping dead letters failed", err);
    }
    return dropped;
  }

  /**
   * Pulls every dead letter (up to PEEK_LIMIT), lets `settle` choose which to remove (by id), acks
   * those and hands the others straight back (ack deadline 0). One pull at a time.
   */
  #pullDeadLetters(settle: (letters: DeadLetter[]) => Promise<ReadonlySet<string>>): Promise<DeadLetter[]> {
    const peek = this.#peeking.catch(() => undefined).then(async () => {
      const ackIds: string[] = [];
      const dead: DeadLetter[] = [];
      const ackIdOf = new Map<DeadLetter, string>();
      try {
        while (ackIds.length < PEEK_LIMIT) {
          const [response] = await this.#admin.pull(
            { subscription: this.#deadSubscriptionPath, maxMessages: PEEK_LIMIT - ackIds.length, returnImmediately: true },
            { timeout: 10_000 },
          );
          const received = response.receivedMessages ?? [];
          if (received.length === 0) break;
          for (const r of received) {
            if (r.ackId) ackIds.push(r.ackId);
            const letter = deadLetterOf(r);
            if (letter === undefined) continue;
            dead.push(letter);
            if (r.ackId) ackIdOf.set(letter, r.ackId);
          }
        }
        const remove = await settle(dead);
        const removing = dead.filter((l) => remove.has(l.id)).map((l) => ackIdOf.get(l)).filter((a): a is string => a !== undefined);
        if (removing.length > 0) {
          await this.#admin.acknowledge({ subscription: this.#deadSubscriptionPath, ackIds: removing });
          const gone = new Set(removing);
          ackIds.splice(0, ackIds.length, ...ackIds.filter((a) => !gone.has(a)));
          return dead.filter((l) => !remove.has(l.id));
        }
      } finally {
        if (ackIds.length > 0) {
          await this.#admin.modifyAckDeadline({ subscription: this.#deadSubscriptionPath, ackIds, ackDeadlineSeconds: 0 }).catch(() => undefined);
        }
      }
      return dead;
    });
    this.#peeking = peek;
    return peek;
  }

  #accept(c: LocalConsumer, message: Message): void {
    c.lastArrival = Date.now();
    const copyId = message.attributes[COPY_ID];
    if (copyId !== undefined) c.copies.delete(copyId);
    // Closing: left unsettled, the library nacks it once the stream is closed (see #release).
    if (c.deliveries.closed) return;
    const record = decodeRecord(message.data.toString("utf8"));
    if (record === undefined) {
      // Not a record this service published: it can never be handled, so it must not block the queue.
      message.ack();
      return;
    }
    c.deliveries.hold(message, record, {
      failures: numberAttribute(message, FAILURES) ?? 0,
      enqueuedAt: numberAttribute(message, ENQUEUED_AT) ?? message.publishTime.getTime(),
      failedAt: numberAttribute(message, FAILED_AT),
    });
  }

  /** A delivery returned by a closed subscription still acks (Pub/Sub may ignore it). */
  #ack(h: Held<Message>): Promise<void> {
    h.message.ack();
    return Promise.resolve();
  }

  async #nack(c: LocalConsumer, h: Held<Message>, reason: string): Promise<void> {
    const failures = h.failures + 1;
    const now = Date.now();
    const work =
      failures >= this.#maxAttempts
        ? this.#move(h, this.#deadTopic, Buffer.from(JSON.stringify({ record: h.record, attempts: failures, reason, deadAt: now } satisfies Omit<DeadLetter, "id">)), {
            [KIND]: DEAD_LETTER,
          })
        : this.#move(h, this.#topic, h.message.data, {
            [ENQUEUED_AT]: String(h.enqueuedAt),
            [FAILURES]: String(failures),
            [FAILED_AT]: String(now),
            [COPY_ID]: this.#expectCopy(c, now),
          });
    this.#settling.add(work);
    const done = () => this.#settling.delete(work);
    work.then(done, done);
    await work;
  }

  /** Notes a retry copy about to be published; forgets those that went to other instances long ago. */
  #expectCopy(c: LocalConsumer, now: number): string {
    for (const [id, at] of c.copies) if (now - at > 60_000) c.copies.delete(id);
    const id = randomUUID();
    c.copies.set(id, now);
    return id;
  }

  /** Publishes the record's next form (a retry copy or a dead letter), then acks the failed delivery. */
  async #move(h: Held<Message>, topic: Topic, data: Buffer, attributes: Record<string, string>): Promise<void> {
    try {
      await topic.publishMessage({ data, attributes });
    } catch (err) {
      // Back to Pub/Sub with its old count: redelivered (after the retry policy's backoff).
      h.message.nack();
      throw unavailable(topic === this.#deadTopic ? "ingress bus: dead-lettering failed" : "ingress bus: nack failed", err);
    }
    h.message.ack();
  }

  /**
   * Returns everything this consumer holds to the next consumer. Messages already on their way (a
   * retry copy this consumer just published often is one) are let in first. Nothing is nacked while
   * the stream is open, or it would come straight back to it: the client library's close ends the
   * stream, then nacks every message it delivered and nobody settled.
   */
  async #release(c: LocalConsumer): Promise<void> {
    if (c.deliveries.closed) return;
    c.deliveries.close();
    if (this.#local === c) this.#local = undefined;
    await Promise.allSettled([...this.#settling]);
    const start = Date.now();
    const waiting = () => {
      const now = Date.now();
      if (now - start >= DRAIN_MAX_MS) return false;
      if (now - Math.max(start, c.lastArrival) < DRAIN_QUIET_MS) return true;
      // A copy published this recently may still be on its way here (or went to another instance).
      for (const at of c.copies.values()) if (now - at < DRAIN_MAX_MS) return true;
      return false;
    };
    while (waiting()) await new Promise((resolve) => setTimeout(resolve, 20));
    await c.subscription.close().catch(() => undefined);
    c.subscription.removeAllListeners();
  }
}
