import { connect, headers, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg, type NatsConnection, type Subscription } from "nats";
import { unavailable } from "../core/errors.ts";
import { HeldDeliveries, type Held } from "./held-deliveries.ts";
import { retryDelayMs, type BusRecord, type BusStats, type BusSubscription, type DeadLetter, type Delivery, type IngressBus } from "./ingress-bus.ts";
import { NatsDeadLetters, type StoredDeadLetter } from "./nats-dead-letters.ts";
import { ENQUEUED_AT, FAILED_AT, FAILURES } from "./nats-headers.ts";
import { pullLoop, returnToStream, wake, type LocalConsumer } from "./nats-pull.ts";
import { ensureConsumer, ensureStreams, isNotFound, maxDeliveriesAdvisory, parseAdvisory, type NatsIngressBusOptions } from "./nats-streams.ts";

export type { NatsIngressBusOptions } from "./nats-streams.ts";

/**
 * Opens (creating if missing) the JetStream streams and the durable consumer, then the bus.
 *
 * - `publish` resolves on the JetStream PubAck: the record is stored in the stream (file storage; on
 *   the replicas' quorum when `replicas` > 1). NATS writes to its files at once but fsyncs on its
 *   `sync_interval` (2 min by default): a NATS process crash keeps acked records, a power loss of a
 *   single unreplicated server may lose the last ones.
 * - The stream has work-queue retention: an acked record is deleted, so the stream holds exactly
 *   the unacked records. `stats` reads the backlog (`state.messages`) and the oldest unacked record
 *   (`first_seq`, its enqueue time) from stream info; `inFlight` is this instance's deliveries.
 * - Failed attempts are counted by this module, not by the server's `max_deliver`: the interface
 *   counts only nacks, while JetStream's delivery count also grows when a consumer closes or dies
 *   with a record in flight. A nack republishes the record with its failure count and time in
 *   headers (de-duplicated by `Nats-Msg-Id`, so a crash between the two steps cannot fork it) and
 *   then acks the delivery. The backoff is applied by whichever instance receives the copy, with
 *   its own `retryBaseMs`, holding it un-acked (and telling the server it is working on it) until
 *   due. After `maxAttempts` failures the record goes, with attempts and reason, to `<stream>_DEAD`
 *   (subject `<prefix>.dead`) and then the delivery is acked: never lost, never redelivered.
 * - Closing a subscription naks what it holds for redelivery to the next consumer: at once, or,
 *   if a pull request is still open on the server, once it has expired (at most 1 s; see #release).
 * - Deliveries nobody settles (consumers closing or crashing with the record) are bounded by the
 *   server: the consumer's `max_deliver` (`maxUnsettledDeliveries`, default 10; no `backoff`, see
 *   ensureConsumer). At `max_deliver` the server stops
 *   delivering the record and publishes the MAX_DELIVERIES advisory; one instance (queue group) reads
 *   the record by its stream sequence, writes it to `<stream>_DEAD` with the reason "delivered N
 *   times without being settled" and deletes it from the ingress stream. Advisories are not stored:
 *   if no instance is connected at that moment, the record stays in the stream (counted in the
 *   backlog, never lost) without being dead-lettered.
 */
export async function openNatsIngressBus(opts: NatsIngressBusOptions): Promise<IngressBus> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: [...(typeof opts.servers === "string" ? [opts.servers] : opts.servers)], maxReconnectAttempts: -1 });
    const jsm = await nc.jetstreamManager();
    await ensureStreams(jsm, opts);
    await ensureConsumer(jsm, opts);
    const js = nc.jetstream();
    const consumer = await js.consumers.get(opts.stream, opts.consumer);
    return new NatsIngressBus(nc, js, jsm, consumer, opts);
  } catch (err) {
    await nc?.close().catch(() => undefined);
    throw unavailable("ingress bus: NATS JetStream is not available", err);
  }
}

const encoder = new TextEncoder();

class NatsIngressBus implements IngressBus {
  #nc: NatsConnection;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #consumer: Consumer;
  #stream: string;
  #ingress: string;
  #dead: string;
  #deadLetters: NatsDeadLetters;
  #advisories: Subscription;
  #maxAttempts: number;
  #retryBaseMs: number;
  #ackWaitMs: number;
  #batch: number;
  #local: LocalConsumer | undefined;
  /** Acks, retries and dead-letterings under way: stats wait for them, so they see their effect. */
  #settling = new Set<Promise<unknown>>();
  #closed = false;

  constructor(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, consumer: Consumer, opts: NatsIngressBusOptions) {
    this.#nc = nc;
    this.#js = js;
    this.#jsm = jsm;
    this.#consumer = consumer;
    this.#stream = opts.stream;
    this.#ingress = `${opts.subjectPrefix}.ingress`;
    this.#dead = `${opts.subjectPrefix}.dead`;
    this.#deadLetters = new NatsDeadLetters(js, jsm, opts.stream, opts.subjectPrefix);
    // One instance (a queue group) takes each advisory; a failure leaves the record in the stream (see openNatsIngressBus).
    this.#advisories = nc.subscribe(maxDeliveriesAdvisory(opts), {
      queue: opts.consumer,
      callback: (err, msg) => {
        if (err !== null) return;
        const advisory = parseAdvisory(msg.data);
        if (advisory !== undefined) this.#settle(this.#deadLetters.unsettled(advisory.streamSeq, advisory.deliveries)).catch(() => undefined);
      },
    });
    this.#maxAttempts = opts.maxAttempts;
    this.#retryBaseMs = opts.retryBaseMs;
    this.#ackWaitMs = opts.ackWaitMs ?? 30_000;
    this.#batch = opts.batchSize ?? 64;
  }

  async publish(record: BusRecord): Promise<void> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    const h = headers();
    h.set(ENQUEUED_AT, String(Date.now()));
    try {
      await this.#js.publish(this.#ingress, encoder.encode(JSON.stringify(record)), { headers: h });
    } catch (err) {
      throw unavailable("ingress bus: publish failed", err);
    }
  }

  consume(handler: (delivery: Delivery) => void): BusSubscription {
    if (this.#closed) throw unavailable("ingress bus: closed");
    if (this.#local !== undefined) throw new Error("ingress bus: one consumer per bus instance");
    const c: LocalConsumer = {
      deliveries: new HeldDeliveries<JsMsg>({
        handler,
        retryBaseMs: this.#retryBaseMs,
        ack: (h) => this.#ack(h),
        nack: (h, reason) => this.#nack(h, reason),
        onRoom: () => wake(c),
      }),
      pull: undefined,
      pullEndsAt: undefined,
      returnDelayMs: 0,
      wake: undefined,
      loop: undefined,
      working: undefined,
    };
    this.#local = c;
    c.loop = pullLoop(c, this.#consumer, this.#batch);
    // Held messages (backoff, paused, slow handler) must not hit the ack wait and be redelivered.
    c.working = setInterval(
      () => {
        try {
          for (const h of c.deliveries.held) if (h.state !== "done") h.message.working();
        } catch {
          // Connection closed: the server redelivers after the ack wait, as for a crash.
        }
      },
      Math.max(1_000, this.#ackWaitMs / 3),
    );
    c.working.unref();
    return c.deliveries.subscription(() => this.#release(c));
  }

  async stats(): Promise<BusStats> {
    await Promise.allSettled([...this.#settling]);
    try {
      const deadLetters = await this.#deadLetters.count();
      const { backlog, oldestEnqueuedAt } = await this.#backlog();
      let inFlight = 0;
      for (const h of this.#local?.deliveries.held ?? []) if (h.state === "inflight") inFlight++;
      return {
        backlog,
        inFlight,
        deadLetters,
        oldestUnackedAgeMs: oldestEnqueuedAt === undefined ? 0 : Math.max(0, Date.now() - oldestEnqueuedAt),
      };
    } catch (err) {
      throw unavailable("ingress bus: stats unavailable", err);
    }
  }

  deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.#deadLetters.list(limit);
  }

  replayDeadLetters(ids: readonly string[]): Promise<number> {
    if (this.#closed) return Promise.reject(unavailable("ingress bus: closed"));
    return this.#deadLetters.replay(ids);
  }

  dropDeadLetters(ids: readonly string[]): Promise<number> {
    return this.#deadLetters.drop(ids);
  }

  async ready(): Promise<boolean> {
    if (this.#closed || this.#nc.isClosed()) return false;
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref());
    return Promise.race([
      this.#nc.flush().then(
        () => true,
        () => false,
      ),
      timeout,
    ]);
  }

  /** Returns what this instance holds to the stream, waits for acks under way, then drains the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local !== undefined) await this.#release(this.#local);
    this.#advisories.unsubscribe();
    await Promise.allSettled([...this.#settling]);
    await this.#nc.drain().catch(() => this.#nc.close());
  }

  /** The stream's message count is the backlog (work-queue retention); its first message is the oldest. */
  async #backlog(): Promise<{ backlog: number; oldestEnqueuedAt: number | undefined }> {
    for (let tries = 0; ; tries++) {
      const { state } = await this.#jsm.streams.info(this.#stream);
      if (state.messages === 0) return { backlog: 0, oldestEnqueuedAt: undefined };
      try {
        const first = await this.#jsm.streams.getMessage(this.#stream, { seq: state.first_seq });
        const at = Number(first.header?.get(ENQUEUED_AT));
        return { backlog: state.messages, oldestEnqueuedAt: Number.isFinite(at) && at > 0 ? at : first.time.getTime() };
      } catch (err) {
        // Acked between the two calls: read the stream state again.
        if (!isNotFound(err) || tries >= 3) throw err;
      }
    }
  }

  /** A delivery returned by a closed subscription still acks: the work was done. */
  #ack(h: Held<JsMsg>): Promise<void> {
    return this.#settle(h.message.ackAck()).then(
      () => undefined,
      (err: unknown) => {
        // The server redelivers it after the ack wait: nothing is lost, the work may be repeated.
        throw unavailable("ingress bus: ack failed", err);
      },
    );
  }

  async #nack(h: Held<JsMsg>, reason: string): Promise<void> {
    const failures = h.failures + 1;
    const now = Date.now();
    const work =
      failures >= this.#maxAttempts ? this.#deadLetter(h, { record: h.record, attempts: failures, reason, deadAt: now }) : this.#retry(h, failures, now);
    await this.#settle(work);
  }

  /** Republishes the record with its failure count, then acks the failed delivery. */
  async #retry(h: Held<JsMsg>, failures: number, now: number): Promise<void> {
    const hdrs = headers();
    hdrs.set(ENQUEUED_AT, String(h.enqueuedAt));
    hdrs.set(FAILURES, String(failures));
    hdrs.set(FAILED_AT, String(now));
    try {
      await this.#js.publish(this.#ingress, h.message.data, { headers: hdrs, msgID: `retry-${h.message.seq}` });
    } catch (err) {
      returnToStream(h.message, retryDelayMs(this.#retryBaseMs, failures));
      throw unavailable("ingress bus: nack failed", err);
    }
    await this.#ackAfterMove(h, "nack");
  }

  async #deadLetter(h: Held<JsMsg>, dead: StoredDeadLetter): Promise<void> {
    try {
      await this.#js.publish(this.#dead, encoder.encode(JSON.stringify(dead)), { msgID: `dead-${h.message.seq}` });
    } catch (err) {
      returnToStream(h.message, retryDelayMs(this.#retryBaseMs, dead.attempts));
      throw unavailable("ingress bus: dead-lettering failed", err);
    }
    await this.#ackAfterMove(h, "dead-lettering");
  }

  /** The record is safe elsewhere; a lost ack only means one more (de-duplicated) copy. */
  async #ackAfterMove(h: Held<JsMsg>, what: string): Promise<void> {
    try {
      await h.message.ackAck();
    } catch (err) {
      throw unavailable(`ingress bus: ${what} failed to ack the delivery`, err);
    }
  }

  #settle<T>(work: Promise<T>): Promise<T> {
    this.#settling.add(work);
    const done = () => this.#settling.delete(work);
    work.then(done, done);
    return work;
  }

  /**
   * Stops pulling and naks everything this consumer holds, for redelivery to the next consumer.
   * The pull request under way outlives the client's unsubscribe on the server until it expires,
   * and a NATS server (2.9) hands a nak'd message to such a request (where nobody receives it: it
   * would wait for the ack wait, and the consumer's bookkeeping goes wrong). So the naks carry a
   * delay until that request has expired: at most FETCH_EXPIRES_MS.
   */
  async #release(c: LocalConsumer): Promise<void> {
    if (c.deliveries.closed) return;
    const held = c.deliveries.close();
    if (this.#local === c) this.#local = undefined;
    if (c.working !== undefined) clearInterval(c.working);
    c.pull?.stop();
    c.returnDelayMs = c.pullEndsAt === undefined ? 0 : Math.max(0, c.pullEndsAt - Date.now());
    wake(c);
    for (const h of held) returnToStream(h.message, c.returnDelayMs);
    await c.loop;
    // The naks are plain publishes: make sure the server has them before the caller goes on.
    await this.#nc.flush().catch(() => undefined);
  }
}
