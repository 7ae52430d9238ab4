import type { Consumer, ConsumerMessages, JsMsg } from "nats";
import { decodeRecord, type HeldDeliveries } from "./held-deliveries.ts";
import { ENQUEUED_AT, FAILED_AT, FAILURES } from "./nats-headers.ts";

/**
 * Pull requests last this long at most; a new one follows while the consumer runs. Short, because a
 * closing consumer's returns wait for its last request to expire (see NatsIngressBus #release).
 */
const FETCH_EXPIRES_MS = 1_000;
/** Margin for the server receiving a pull request later than the client sent it. */
const EXPIRY_MARGIN_MS = 200;
/** Wait after a failed pull before the next one (connection lost, consumer deleted). */
const FETCH_RETRY_MS = 500;

const decoder = new TextDecoder();

function numberHeader(msg: JsMsg, name: string): number | undefined {
  const raw = msg.headers?.get(name);
  const n = raw ? Number(raw) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Naks, if the connection still can: otherwise the server redelivers after the ack wait anyway.
 * Always with a delay of at least 1 ms (a bare nak has none; nats.js sends a 0 delay as a bare nak).
 */
export function returnToStream(msg: JsMsg, delayMs: number): void {
  try {
    msg.nak(Math.max(1, Math.ceil(delayMs)));
  } catch {
    // Connection closed.
  }
}

/** The one consumer of a bus instance: what it holds and its pull loop. */
export interface LocalConsumer {
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

/** Pulls batches into `c.deliveries` until it closes; a pull waits until the previous batch is handed out. */
export async function pullLoop(c: LocalConsumer, consumer: Consumer, batch: number): Promise<void> {
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
      const pull = await consumer.fetch({ max_messages: batch, expires: FETCH_EXPIRES_MS });
      c.pull = pull;
      if (c.deliveries.closed) pull.stop();
      for await (const msg of pull) {
        received++;
        accept(c, msg);
      }
    } catch {
      received = 0;
    } finally {
      c.pull = undefined;
      // Ended by itself (expired or filled): the server no longer holds it.
      if (!c.deliveries.closed) c.pullEndsAt = undefined;
    }
    // A pull that failed or ended at once with nothing (server trouble) is retried after a pause.
    if (!c.deliveries.closed && received === 0 && Date.now() - started < FETCH_EXPIRES_MS / 2) await pause(c, FETCH_RETRY_MS);
  }
}

function pause(c: LocalConsumer, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    c.wake = resolve;
    setTimeout(resolve, ms).unref();
  });
}

export function wake(c: LocalConsumer): void {
  const wake = c.wake;
  c.wake = undefined;
  wake?.();
}

function accept(c: LocalConsumer, msg: JsMsg): void {
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
