import { randomUUID } from "node:crypto";
import { Duration, PubSub, v1, type Message, type Subscription, type Topic } from "@google-cloud/pubsub";
import { unavailable } from "../core/errors.ts";
import { decodeRecord, HeldDeliveries, type Held } from "./held-deliveries.ts";
import { type BusRecord, type BusStats, type BusSubscription, type DeadLetter, type Delivery, type IngressBus } from "./ingress-bus.ts";
import { DEAD_LETTER, ENQUEUED_AT, FAILURES, KIND, PubSubDeadLetters } from "./pubsub-dead-letters.ts";
import { clientOptions, ensureResources, type Names, type PubSubIngressBusOptions } from "./pubsub-setup.ts";

export type { PubSubIngressBusOptions } from "./pubsub-setup.ts";

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
    const { names, topic, deadTopic } = await ensureResources(pubsub, opts);
    // For synchronous pulls of the dead letters, on the same endpoint and credentials.
    const config = await pubsub.getClientConfig();
    const admin = new v1.SubscriberClient({ ...config, port: config.port === undefined ? undefined : Number(config.port) });
    return new PubSubIngressBus(pubsub, admin, topic, deadTopic, names, opts);
  } catch (err) {
    await pubsub.close().catch(() => undefined);
    throw unavailable("ingress bus: Pub/Sub is not available", err);
  }
}

/** Record attributes on the ingress topic (and ENQUEUED_AT, FAILURES). */
const FAILED_AT = "failedAt";
/** Tells a retry copy this instance published when it comes back (see #release). */
const COPY_ID = "copyId";
/**
 * A closing consumer waits until no message has reached its stream for this long, and its own
 * recent retry copies have (at most DRAIN_MAX_MS): a message still on the wire when the stream
 * closes stays leased to it until its ack deadline (10 s or more) instead of going to the next consumer.
 */
const DRAIN_QUIET_MS = 200;
const DRAIN_MAX_MS = 1_000;

function numberAttribute(message: Message, name: string): number | undefined {
  const raw = message.attributes[name];
  const n = raw ? Number(raw) : NaN;
  return Number.isFinite(n) ? n : undefined;
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
  #deadLetters: PubSubDeadLetters;
  #maxAttempts: number;
  #retryBaseMs: number;
  #maxMessages: number;
  #local: LocalConsumer | undefined;
  /** Retries and dead-letterings under way: stats and close wait for them. */
  #settling = new Set<Promise<unknown>>();
  #closed = false;

  constructor(pubsub: PubSub, admin: v1.SubscriberClient, topic: Topic, deadTopic: Topic, names: Names, opts: PubSubIngressBusOptions) {
    this.#pubsub = pubsub;
    this.#admin = admin;
    this.#topic = topic;
    this.#deadTopic = deadTopic;
    this.#subscriptionName = names.subscription;
    this.#deadLetters = new PubSubDeadLetters(admin, pubsub.subscription(names.deadSubscription).name, topic);
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
      deadLetters = (await this.#deadLetters.peek()).length;
    } catch (err) {
      throw unavailable("ingress bus: stats unavailable", err);
    }
    return { backlog, inFlight, deadLetters, oldestUnackedAgeMs: oldest === undefined ? 0 : Math.max(0, Date.now() - oldest) };
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    try {
      const dead = await this.#deadLetters.peek();
      return dead.sort((a, b) => b.deadAt - a.deadAt).slice(0, limit);
    } catch (err) {
      throw unavailable("ingress bus: dead letters unavailable", err);
    }
  }

  replayDeadLetters(ids: readonly string[]): Promise<number> {
    if (this.#closed) return Promise.reject(unavailable("ingress bus: closed"));
    return this.#deadLetters.replay(ids);
  }

  dropDeadLetters(ids: readonly string[]): Promise<number> {
    return this.#deadLetters.drop(ids);
  }

  async ready(): Promise<boolean> {
    if (this.#closed) return false;
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref());
    const reachable = this.#topic.exists().then(
      ([exists]) => exists,
      () => false,
    );
    return Promise.race([reachable, timeout]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local !== undefined) await this.#release(this.#local);
    await Promise.allSettled([...this.#settling]);
    await this.#deadLetters.idle();
    await Promise.allSettled([this.#topic.flush(), this.#deadTopic.flush()]);
    await this.#admin.close().catch(() => undefined);
    await this.#pubsub.close().catch(() => undefined);
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
        ? this.#move(
            h,
            this.#deadTopic,
            Buffer.from(JSON.stringify({ record: h.record, attempts: failures, reason, deadAt: now } satisfies Omit<DeadLetter, "id">)),
            {
              [KIND]: DEAD_LETTER,
            },
          )
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
