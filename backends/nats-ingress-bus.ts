import {
  AckPolicy,
  connect,
  DeliverPolicy,
  headers,
  nanos,
  NatsError,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type StreamConfig,
} from "nats";
import { RoutingError } from "../core/errors.ts";
import { decodeRecord, HeldDeliveries, type Held } from "./held-deliveries.ts";
import {
  retryDelayMs,
  type BusOptions,
  type BusRecord,
  type BusStats,
  type BusSubscription,
  type DeadLetter,
  type Delivery,
  type IngressBus,
} from "./ingress-bus.ts";

export interface NatsIngressBusOptions extends BusOptions {
  /** NATS server URL(s), e.g. "nats://127.0.0.1:4222". */
  readonly servers: string | readonly string[];
  /** JetStream stream holding the records (work-queue retention); dead letters go to `<stream>_DEAD`. */
  readonly stream: string;
  /** Durable pull consumer every instance of the service shares (the work is spread over them). */
  readonly consumer: string;
  /** Records are published on `<prefix>.ingress`, dead letters on `<prefix>.dead`. */
  readonly subjectPrefix: string;
  /** How long the server waits for an ack before redelivering (a crashed consumer); default 30 s. */
  readonly ackWaitMs?: number;
  /** Messages requested per pull; default 64. */
  readonly batchSize?: number;
  /** Stream replicas when the streams are created (3 in a clustered production deployment); default 1. */
  readonly replicas?: number;
}

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

/** Headers of a record on the ingress subject. */
const ENQUEUED_AT = "Routing-Enqueued-At";
const FAILURES = "Routing-Failures";
const FAILED_AT = "Routing-Failed-At";
/**
 * Pull requests last this long at most; a new one follows while the consumer runs. Short, because a
 * closing consumer's returns wait for its last request to expire (see #release).
 */
const FETCH_EXPIRES_MS = 1_000;
/** Margin for the server receiving a pull request later than the client sent it. */
const EXPIRY_MARGIN_MS = 200;
/** Wait after a failed pull before the next one (connection lost, consumer deleted). */
const FETCH_RETRY_MS = 500;

function unavailable(what: string, cause?: unknown): RoutingError {
  return new RoutingError("BACKEND_UNAVAILABLE", what, cause === undefined ? undefined : { cause });
}

/** A dead letter as the dead-letter stream keeps it; its id is its sequence there. */
type StoredDeadLetter = Omit<DeadLetter, "id">;

function deadStreamOf(stream: string): string {
  return `${stream}_DEAD`;
}

function isNotFound(err: unknown): boolean {
  return err instanceof NatsError && err.api_error?.code === 404;
}

/**
 * A message delete of a sequence that is not (or no longer) in the stream. NATS 2.9 answers it in
 * several ways: 400 "sequence not found" (10043), 500 "no message found" or "stream store EOF" (10057).
 */
function isMissingMessage(err: unknown): boolean {
  if (isNotFound(err)) return true;
  const api = typeof err === "object" && err !== null && "api_error" in err ? (err.api_error as { err_code?: number } | undefined) : undefined;
  return api?.err_code === 10043 || api?.err_code === 10057;
}

async function ensureStreams(jsm: JetStreamManager, opts: NatsIngressBusOptions): Promise<void> {
  const replicas = opts.replicas ?? 1;
  await ensureStream(jsm, {
    name: opts.stream,
    subjects: [`${opts.subjectPrefix}.ingress`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: replicas,
  });
  await ensureStream(jsm, {
    name: deadStreamOf(opts.stream),
    subjects: [`${opts.subjectPrefix}.dead`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
  });
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    const info = await jsm.streams.info(config.name);
    if (info.config.retention !== config.retention) {
      throw new Error(`stream ${config.name} exists with retention ${info.config.retention}, expected ${String(config.retention)}`);
    }
    return;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  // Another instance may create it at the same moment: an identical config is accepted twice.
  await jsm.streams.add(config);
}

async function ensureConsumer(jsm: JetStreamManager, opts: NatsIngressBusOptions): Promise<void> {
  try {
    await jsm.consumers.info(opts.stream, opts.consumer);
    return;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  await jsm.consumers.add(opts.stream, {
    durable_name: opts.consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${opts.subjectPrefix}.ingress`,
    ack_wait: nanos(opts.ackWaitMs ?? 30_000),
    // Failed attempts are counted here (see openNatsIngressBus), returned deliveries are not failures.
    max_deliver: -1,
    max_ack_pending: 10_000,
  });
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function numberHeader(msg: JsMsg, name: string): number | undefined {
  const raw = msg.headers?.get(name);
  const n = raw ? Number(raw) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** Naks, if the connection still can: otherwise the server redelivers after the ack wait anyway. */
function returnToStream(msg: JsMsg, delayMs: number): void {
  try {
    msg.nak(delayMs);
  } catch {
    // Connection closed.
  }
}

interface LocalConsumer {
  readonly deliveries: HeldDeliveries<JsMsg>;
  pull: ConsumerMessages | undefined;
  /** When the server drops the pull request under way (undefined when none is). */
  pullEndsAt: number | undefined;
  /** Set when closed: the delay its returns (naks) carry. */
  returnDelayMs: number;
  wake: (() => void) | undefined;
  loop: Promise<void> | undefined;
  working: NodeJS.Timeout | undefined;
}

class NatsIngressBus implements IngressBus {
  #nc: NatsConnection;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #consumer: Consumer;
  #stream: string;
  #ingress: string;
  #dead: string;
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
        onRoom: () => this.#wake(c),
      }),
      pull: undefined,
      pullEndsAt: undefined,
      returnDelayMs: 0,
      wake: undefined,
      loop: undefined,
      working: undefined,
    };
    this.#local = c;
    c.loop = this.#pullLoop(c);
    // Held messages (backoff, paused, slow handler) must not hit the ack wait and be redelivered.
    c.working = setInterval(() => {
      try {
        for (const h of c.deliveries.held) if (h.state !== "done") h.message.working();
      } catch {
        // Connection closed: the server redelivers after the ack wait, as for a crash.
      }
    }, Math.max(1_000, this.#ackWaitMs / 3));
    c.working.unref();
    return c.deliveries.subscription(() => this.#release(c));
  }

  async stats(): Promise<BusStats> {
    await Promise.allSettled([...this.#settling]);
    try {
      const dead = await this.#jsm.streams.info(deadStreamOf(this.#stream));
      const { backlog, oldestEnqueuedAt } = await this.#backlog();
      let inFlight = 0;
      for (const h of this.#local?.deliveries.held ?? []) if (h.state === "inflight") inFlight++;
      return {
        backlog,
        inFlight,
        deadLetters: dead.state.messages,
        oldestUnackedAgeMs: oldestEnqueuedAt === undefined ? 0 : Math.max(0, Date.now() - oldestEnqueuedAt),
      };
    } catch (err) {
      throw unavailable("ingress bus: stats unavailable", err);
    }
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    try {
      const stream = deadStreamOf(this.#stream);
      const { state } = await this.#jsm.streams.info(stream);
      const dead: DeadLetter[] = [];
      // Newest first; sequences may have gaps (deleted or aged-out messages).
      for (let seq = state.last_seq; seq >= state.first_seq && seq > 0 && dead.length < limit; seq--) {
        const stored = await this.#jsm.streams.getMessage(stream, { seq }).catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
        if (stored === undefined) continue;
        dead.push({ ...(JSON.parse(decoder.decode(stored.data)) as StoredDeadLetter), id: String(seq) });
      }
      return dead;
    } catch (err) {
      throw unavailable("ingress bus: dead letters unavailable", err);
    }
  }

  /**
   * Each named dead letter (its sequence in `<stream>_DEAD`) is published to the ingress subject
   * again (de-duplicated by `Nats-Msg-Id` `replay-<seq>`, so a crash between the steps cannot
   * fork it), then deleted from the dead-letter stream.
   */
  async replayDeadLetters(ids: readonly string[]): Promise<number> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    try {
      let replayed = 0;
      for (const seq of this.#deadSeqs(ids)) {
        const dead = await this.#deadLetterAt(seq);
        if (dead === undefined) continue;
        const h = headers();
        h.set(ENQUEUED_AT, String(Date.now()));
        await this.#js.publish(this.#ingress, encoder.encode(JSON.stringify(dead.record)), { headers: h, msgID: `replay-${this.#stream}-${seq}` });
        await this.#jsm.streams.deleteMessage(deadStreamOf(this.#stream), seq, false).catch((err: unknown) => {
          if (!isMissingMessage(err)) throw err;
        });
        replayed++;
      }
      return replayed;
    } catch (err) {
      throw unavailable("ingress bus: replay failed", err);
    }
  }

  async dropDeadLetters(ids: readonly string[]): Promise<number> {
    try {
      let dropped = 0;
      for (const seq of this.#deadSeqs(ids)) {
        if ((await this.#deadLetterAt(seq)) === undefined) continue;
        const gone = await this.#jsm.streams.deleteMessage(deadStreamOf(this.#stream), seq, false).catch((err: unknown) => {
          if (isMissingMessage(err)) return false;
          throw err;
        });
        if (gone) dropped++;
      }
      return dropped;
    } catch (err) {
      throw unavailable("ingress bus: dropping dead letters failed", err);
    }
  }

  #deadSeqs(ids: readonly string[]): number[] {
    return [...new Set(ids)].map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
  }

  async #deadLetterAt(seq: number): Promise<StoredDeadLetter | undefined> {
    const stored = await this.#jsm.streams.getMessage(deadStreamOf(this.#stream), { seq }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    return stored === undefined ? undefined : (JSON.parse(decoder.decode(stored.data)) as StoredDeadLetter);
  }

  async ready(): Promise<boolean> {
    if (this.#closed || this.#nc.isClosed()) return false;
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref());
    return Promise.race([this.#nc.flush().then(() => true, () => false), timeout]);
  }

  /** Returns what this instance holds to the stream, waits for acks under way, then drains the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local !== undefined) await this.#release(this.#local);
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

  async #pullLoop(c: LocalConsumer): Promise<void> {
    while (!c.deliveries.closed) {
      // Pull only when the previous batch is handed out: a paused consumer buffers at most one batch.
      if (!c.deliveries.hasRoom) {
        await new Promise<void>((resolve) => (c.wake = resolve));
        continue;
      }
      const started = Date.now();
      let received = 0;
      try {
        c.pullEndsAt = started + FETCH_EXPIRES_MS + EXPIRY_MARGIN_MS;
        const pull = await this.#consumer.fetch({ max_messages: this.#batch, expires: FETCH_EXPIRES_MS });
        c.pull = pull;
        if (c.deliveries.closed) pull.stop();
        for await (const msg of pull) {
          received++;
          this.#accept(c, msg);
        }
      } catch {
        received = 0;
      } finally {
        c.pull = undefined;
        // Ended by itself (expired or filled): the server no longer holds it.
        if (!c.deliveries.closed) c.pullEndsAt = undefined;
      }
      // A pull that failed or ended at once with nothing (server trouble) is retried after a pause.
      if (!c.deliveries.closed && received === 0 && Date.now() - started < FETCH_EXPIRES_MS / 2) await this.#pause(c, FETCH_RETRY_MS);
    }
  }

  #pause(c: LocalConsumer, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      c.wake = resolve;
      setTimeout(resolve, ms).unref();
    });
  }

  #wake(c: LocalConsumer): void {
    const wake = c.wake;
    c.wake = undefined;
    wake?.();
  }

  #accept(c: LocalConsumer, msg: JsMsg): void {
    if (c.deliveries.closed) {
      returnToStream(msg, c.returnDelayMs);
      return;
    }
    const record = decodeRecord(decoder.decode(msg.data));
    if (record === undefined) {
      // Not a record this service published: it can never be handled, so it must not block the queue.
      try {
        msg.term();
      } catch {
        // Connection closed: it comes back after the ack wait and is dropped then.
      }
      return;
    }
    c.deliveries.hold(msg, record, {
      failures: numberHeader(msg, FAILURES) ?? 0,
      enqueuedAt: numberHeader(msg, ENQUEUED_AT) ?? Date.now(),
      failedAt: numberHeader(msg, FAILED_AT),
    });
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
      failures >= this.#maxAttempts
        ? this.#deadLetter(h, { record: h.record, attempts: failures, reason, deadAt: now })
        : this.#retry(h, failures, now);
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
    this.#wake(c);
    for (const h of held) returnToStream(h.message, c.returnDelayMs);
    await c.loop;
    // The naks are plain publishes: make sure the server has them before the caller goes on.
    await this.#nc.flush().catch(() => undefined);
  }
}
