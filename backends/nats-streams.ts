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

export async function ensureConsumer(jsm: JetStreamManager, opts: NatsIngressBusOptions): Promise<void> {
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
