import { AckPolicy, DeliverPolicy, nanos, NatsError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "nats";
import type { BusOptions } from "./ingress-bus.ts";

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
  /**
   * The consumer's `max_deliver` (2..100): a record delivered this often without being settled (a
   * consumer closing or dying with it in flight; a nack republishes, see openNatsIngressBus) is
   * dead-lettered through the server's MAX_DELIVERIES advisory. Default 10.
   */
  readonly maxUnsettledDeliveries?: number;
}

/** The consumer's `max_deliver`, from `maxUnsettledDeliveries`. */
export function maxDeliverOf(opts: NatsIngressBusOptions): number {
  return Math.min(100, Math.max(2, opts.maxUnsettledDeliveries ?? 10));
}

/** The subject the server announces a record that reached `max_deliver` on. */
export function maxDeliveriesAdvisory(opts: NatsIngressBusOptions): string {
  return `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${opts.stream}.${opts.consumer}`;
}

export function deadStreamOf(stream: string): string {
  return `${stream}_DEAD`;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof NatsError && err.api_error?.code === 404;
}

/**
 * A message delete of a sequence that is not (or no longer) in the stream. NATS 2.9 answers it in
 * several ways: 400 "sequence not found" (10043), 500 "no message found" or "stream store EOF" (10057).
 */
export function isMissingMessage(err: unknown): boolean {
  if (isNotFound(err)) return true;
  const api = typeof err === "object" && err !== null && "api_error" in err ? (err.api_error as { err_code?: number } | undefined) : undefined;
  return api?.err_code === 10043 || api?.err_code === 10057;
}

export async function ensureStreams(jsm: JetStreamManager, opts: NatsIngressBusOptions): Promise<void> {
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

/** The fields of a MAX_DELIVERIES advisory the bus uses, or undefined for anything else. */
export function parseAdvisory(data: Uint8Array): { streamSeq: number; deliveries: number } | undefined {
  try {
    const a = JSON.parse(new TextDecoder().decode(data)) as { stream_seq?: unknown; deliveries?: unknown };
    if (typeof a.stream_seq !== "number" || !Number.isSafeInteger(a.stream_seq) || a.stream_seq <= 0) return undefined;
    return { streamSeq: a.stream_seq, deliveries: typeof a.deliveries === "number" ? a.deliveries : 0 };
  } catch {
    return undefined;
  }
}

/**
 * Creates the durable consumer, or brings an existing one to this configuration's `max_deliver` and
 * ack wait (both editable; the last instance to open wins, as with any shared setting). No `backoff`:
 * on NATS 2.9 a consumer with one holds a nak'd record for its backoff even when the nak carries a
 * shorter delay (checked: a nak(100 ms) of a second delivery was not redelivered within 4 s with
 * backoff [30 s, 60 s]), and the bus's returns to the stream (closing consumers, failed republishes)
 * rely on the nak's delay.
 */
export async function ensureConsumer(jsm: JetStreamManager, opts: NatsIngressBusOptions): Promise<void> {
  const redelivery = { ack_wait: nanos(opts.ackWaitMs ?? 30_000), max_deliver: maxDeliverOf(opts) };
  try {
    const { config } = await jsm.consumers.info(opts.stream, opts.consumer);
    if (config.max_deliver !== redelivery.max_deliver || config.ack_wait !== redelivery.ack_wait) {
      await jsm.consumers.update(opts.stream, opts.consumer, redelivery);
    }
    return;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  await jsm.consumers.add(opts.stream, {
    durable_name: opts.consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${opts.subjectPrefix}.ingress`,
    ...redelivery,
    max_ack_pending: 10_000,
  });
}
