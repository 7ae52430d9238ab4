import { retryDelayMs, type BusRecord, type BusSubscription, type Delivery } from "./ingress-bus.ts";

/** A received message's record, or undefined when it is not one this service published. */
export function decodeRecord(text: string): BusRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<BusRecord>;
    if (typeof r.recipientId !== "string" || typeof r.messageId !== "string" || typeof r.envelope !== "string") return undefined;
    return r as BusRecord;
  } catch {
    return undefined;
  }
}

/** A message a consumer holds: waiting for its backoff, ready for the handler, or in flight. */
export interface Held<M> {
  readonly message: M;
  readonly record: BusRecord;
  /** Failed attempts before this delivery. */
  readonly failures: number;
  readonly enqueuedAt: number;
  readonly state: "waiting" | "ready" | "inflight" | "done";
}

interface Entry<M> extends Held<M> {
  state: Held<M>["state"];
  /** The backoff timer while "waiting". */
  timer: NodeJS.Timeout | undefined;
  /** The ack under way or done, for the next `ack` call to return. */
  acked: Promise<void> | undefined;
}

export interface HeldDeliveriesOptions<M> {
  readonly handler: (delivery: Delivery) => void;
  readonly retryBaseMs: number;
  /** The bus's side of `Delivery.ack`, called once the message is no longer held. */
  readonly ack: (h: Held<M>) => Promise<void>;
  /** The bus's side of `Delivery.nack` (retry or dead-letter), called once the message is no longer held. */
  readonly nack: (h: Held<M>, reason: string) => Promise<void>;
  /** Called on resume and whenever the ready queue has been handed out: `hasRoom` may have turned true. */
  readonly onRoom?: () => void;
}

/**
 * The messages one consumer of a broker-backed bus (NATS, Pub/Sub) holds, from receipt to settling.
 *
 * - A record that failed before (`failures` > 0) waits until `failedAt + retryDelayMs(retryBaseMs,
 *   failures)` on a backoff timer; any other is ready at once.
 * - Ready messages go to the handler in the order they became ready, on a later turn (setImmediate),
 *   never from inside `hold`, `resume` or the caller's publish. A hand-out stops when paused or closed.
 * - Pause stops the hand-out only: deliveries in flight stay valid and backoff timers keep running.
 * - `ack` is idempotent (a failed one may be tried again); it still reaches the bus after `close`:
 *   the work was done. `nack` acts only on the delivery in flight: one settled or given back by
 *   `close` is ignored. A handler that throws has failed the attempt, as `nack("handler threw")`.
 * - `close` cancels every backoff timer, drops the ready queue, marks everything held "done" and
 *   returns it for the bus to give back; nothing is handed out after it.
 * - Backoff timers are unref'd: held messages never keep the process alive (the hand-out's
 *   setImmediate is not).
 */
export class HeldDeliveries<M> {
  readonly #opts: HeldDeliveriesOptions<M>;
  readonly #held = new Set<Entry<M>>();
  #ready: Entry<M>[] = [];
  #scheduled = false;
  #paused = false;
  #closed = false;

  constructor(opts: HeldDeliveriesOptions<M>) {
    this.#opts = opts;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Not paused, and nothing ready waits for the handler: the consumer can take more messages. */
  get hasRoom(): boolean {
    return !this.#paused && this.#ready.length === 0;
  }

  /** Everything held and not yet settled or given back. */
  get held(): ReadonlySet<Held<M>> {
    return this.#held;
  }

  /** Takes a received record; the caller checks `closed` first (what it does then is its own). */
  hold(message: M, record: BusRecord, meta: { failures: number; enqueuedAt: number; failedAt: number | undefined }): void {
    const { failures, enqueuedAt, failedAt } = meta;
    const h: Entry<M> = { message, record, failures, enqueuedAt, state: "ready", timer: undefined, acked: undefined };
    this.#held.add(h);
    const wait = failures > 0 && failedAt !== undefined ? failedAt + retryDelayMs(this.#opts.retryBaseMs, failures) - Date.now() : 0;
    if (wait > 0) {
      h.state = "waiting";
      h.timer = setTimeout(() => {
        h.timer = undefined;
        if (h.state !== "waiting" || this.#closed) return;
        this.#makeReady(h);
      }, wait);
      h.timer.unref();
      return;
    }
    this.#makeReady(h);
  }

  /** The consumer's handle: pause and resume act here; `close` is the bus's release, which calls `close()` below. */
  subscription(close: () => Promise<void>): BusSubscription {
    return {
      pause: () => {
        this.#paused = true;
      },
      resume: () => {
        if (this.#closed) return;
        this.#paused = false;
        this.#schedule();
        this.#opts.onRoom?.();
      },
      close,
    };
  }

  /** Stops for good; returns what was held (now "done"), for the bus to give back. */
  close(): Held<M>[] {
    this.#closed = true;
    const held = [...this.#held];
    for (const h of held) this.#forget(h);
    this.#ready = [];
    return held;
  }

  #forget(h: Entry<M>): void {
    if (h.timer !== undefined) clearTimeout(h.timer);
    h.timer = undefined;
    h.state = "done";
    this.#held.delete(h);
  }

  #makeReady(h: Entry<M>): void {
    h.state = "ready";
    this.#ready.push(h);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#paused || this.#closed || this.#ready.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      while (!this.#paused && !this.#closed) {
        const h = this.#ready.shift();
        if (h === undefined) break;
        if (h.state === "ready") this.#deliver(h);
      }
      if (this.#ready.length === 0) this.#opts.onRoom?.();
    });
  }

  #deliver(h: Entry<M>): void {
    h.state = "inflight";
    const delivery: Delivery = {
      record: h.record,
      attempt: h.failures + 1,
      ack: () => this.#ack(h),
      nack: (reason: string) => this.#nack(h, reason),
    };
    try {
      this.#opts.handler(delivery);
    } catch {
      // A throwing handler failed this attempt, like a nack.
      this.#nack(h, "handler threw").catch(() => undefined);
    }
  }

  #ack(h: Entry<M>): Promise<void> {
    if (h.acked !== undefined) return h.acked;
    this.#forget(h);
    const acked = this.#opts.ack(h);
    h.acked = acked;
    acked.catch(() => {
      if (h.acked === acked) h.acked = undefined;
    });
    return acked;
  }

  #nack(h: Entry<M>, reason: string): Promise<void> {
    // Only the current delivery can fail a record; a returned or settled one is ignored.
    if (h.state !== "inflight") return Promise.resolve();
    this.#forget(h);
    return this.#opts.nack(h, reason);
  }
}
