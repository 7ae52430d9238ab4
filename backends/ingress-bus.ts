import type { Urn } from "../core/urn.ts";

export type IngressPath = "http" | "ws" | "mqtt" | "action";

/** What travels on the bus: the stamped envelope as JSON text plus the routing header copied out of it. */
export interface BusRecord {
  readonly recipientId: Urn;
  readonly messageId: string;
  readonly isEphemeral: boolean;
  readonly priority: number;
  /** The stamped SecureEnvelope, serialised once at ingress and never re-encoded. */
  readonly envelope: string;
  /** Epoch ms when ingress accepted it (the start of the end-to-end latency). */
  readonly acceptedAt: number;
  readonly path: IngressPath;
}

export interface Delivery {
  readonly record: BusRecord;
  /** 1 on first delivery, incremented on every redelivery. */
  readonly attempt: number;
  /** The router has durably done its work: the bus forgets the record. Idempotent. */
  ack(): Promise<void>;
  /** The work failed: the record is redelivered after a backoff, or dead-lettered after maxAttempts. */
  nack(reason: string): Promise<void>;
}

export interface BusSubscription {
  /** Stop handing out new deliveries (in-flight ones stay valid). */
  pause(): void;
  resume(): void;
  /** Stop delivering; unacked deliveries return to the bus (redelivered to the next consumer). */
  close(): Promise<void>;
}

export interface BusStats {
  /** Records accepted but not yet acked, in flight included. */
  readonly backlog: number;
  readonly inFlight: number;
  readonly deadLetters: number;
  /** Age of the oldest unacked record in ms, 0 when empty. */
  readonly oldestUnackedAgeMs: number;
}

export interface DeadLetter {
  /** Names it for `replayDeadLetters` and `dropDeadLetters` (the bus's own key: a row, stream sequence or message id). */
  readonly id: string;
  readonly record: BusRecord;
  readonly attempts: number;
  readonly reason: string;
  readonly deadAt: number;
}

/**
 * The central ingress bus between the ingestion paths (HTTP, WebSocket, MQTT) and the router.
 *
 * Guarantees every implementation keeps:
 * - `publish` resolves only once the record is durable in the bus (it survives a crash of this
 *   process); it rejects with BACKEND_UNAVAILABLE otherwise, and then the publisher was told nothing
 *   was accepted. The record may reach the consumer before `publish` resolves (the embedded bus
 *   delivers it once committed, while its sync runs), so a rejected publish may still be routed: the
 *   publisher's retry is then a duplicate the consumer absorbs.
 * - At-least-once delivery: a record is delivered until a consumer acks it. A nack, a consumer
 *   closing, or the process dying returns it for redelivery. Consumers de-duplicate.
 * - After `maxAttempts` failed deliveries the record moves to a dead-letter place that
 *   `deadLetters()` lists; it is not redelivered from there.
 * - Ordering is best-effort FIFO per bus; nothing may depend on it.
 * - `replayDeadLetters` puts dead letters back on the bus as records with the same message id and
 *   no failed attempts (moved in one durable step, or published before being removed: never lost;
 *   at worst delivered twice, which consumers de-duplicate). `dropDeadLetters` deletes them. Both
 *   ignore unknown ids and resolve with how many they acted on.
 */
export interface IngressBus {
  publish(record: BusRecord): Promise<void>;
  /** Starts delivering to `handler`, one consumer per bus instance. */
  consume(handler: (delivery: Delivery) => void): BusSubscription;
  stats(): Promise<BusStats>;
  /** The backlog as `stats()` counts it, synchronously; only buses that hold it in this process (embedded, memory). */
  backlogNow?(): number;
  deadLetters(limit: number): Promise<DeadLetter[]>;
  replayDeadLetters(ids: readonly string[]): Promise<number>;
  dropDeadLetters(ids: readonly string[]): Promise<number>;
  /** True when the backend is reachable (readiness). */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

export interface BusOptions {
  /** Deliveries before a record is dead-lettered. */
  readonly maxAttempts: number;
  /** First redelivery delay in ms; doubles per attempt up to 30 s (buses add jitter: core/backoff.ts). */
  readonly retryBaseMs: number;
}

export function retryDelayMs(base: number, attempt: number): number {
  return Math.min(30_000, base * 2 ** Math.max(0, attempt - 1));
}
