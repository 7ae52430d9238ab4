import type { Backoff } from "./backoff.ts";
import { sleep, type Life } from "./life.ts";
import { TransportClosedError, type Transport } from "./transport.ts";
import { RoutingClientError, type QueuedMessage } from "./types.ts";

export interface InboxDeps {
  /** The connection now (undefined while offline). */
  readonly transport: () => Transport | undefined;
  readonly life: Life;
  readonly backoff: Backoff;
  readonly fetchLimit?: number;
  readonly dedupWindow?: number;
  /** The `message` handlers, in order. */
  readonly handlers: () => Iterable<(message: QueuedMessage) => unknown>;
  emit(event: "error", error: unknown): void;
  emit(event: "acked", messageIds: string[]): void;
}

/**
 * The receiving side of a client: pulls until the mailbox is empty, hands each stored message to
 * the handlers once (ids remembered within `dedupWindow`), acks it after they resolved.
 */
export class Inbox {
  readonly #deps: InboxDeps;
  readonly #handled = new Set<string>();
  #pulling = false;
  #pullAgain = false;
  /** Deliveries run one after another (pulls and pushed frames alike), so a message is never handled twice at once. */
  #delivering: Promise<boolean> = Promise.resolve(true);

  constructor(deps: InboxDeps) {
    this.#deps = deps;
  }

  /** Pulls until the mailbox is empty; a poke during a pull makes it go round once more. */
  async pull(): Promise<void> {
    if (this.#pulling) {
      this.#pullAgain = true;
      return;
    }
    this.#pulling = true;
    try {
      do {
        this.#pullAgain = false;
        const transport = this.#deps.transport();
        if (!transport || this.#deps.life.closed) return;
        let batch: QueuedMessage[];
        try {
          batch = await transport.fetch(this.#deps.fetchLimit ?? 100);
        } catch (err) {
          if (err instanceof TransportClosedError) return; // the next connect pulls
          this.#deps.emit("error", err);
          await sleep(this.#deps.backoff.next(err instanceof RoutingClientError ? (err.retryAfterMs ?? 0) : 0), this.#deps.life);
          this.#pullAgain = true;
          continue;
        }
        if (batch.length === 0) {
          this.#deps.backoff.reset();
          continue;
        }
        const allHandled = await this.deliver(batch);
        // A handler that threw leaves its message in the mailbox: pause before it comes round again.
        if (!allHandled) await sleep(this.#deps.backoff.next(), this.#deps.life);
        this.#pullAgain = true;
      } while (this.#pullAgain && !this.#deps.life.closed);
    } finally {
      this.#pulling = false;
    }
  }

  /** Hands messages to the handlers in order (repeats skipped), acks what was handled. False if a handler threw. */
  deliver(messages: readonly QueuedMessage[]): Promise<boolean> {
    const run = this.#delivering.then(() => this.#deliverNow(messages));
    this.#delivering = run.catch(() => false);
    return run;
  }

  async #deliverNow(messages: readonly QueuedMessage[]): Promise<boolean> {
    const acks: string[] = [];
    let ok = true;
    for (const message of messages) {
      if (!this.#handled.has(message.id)) {
        try {
          for (const handler of this.#deps.handlers()) await handler(message);
        } catch (err) {
          this.#deps.emit("error", err);
          ok = false;
          break;
        }
        this.#remember(message.id);
      }
      if (!message.envelope.isEphemeral) acks.push(message.id);
    }
    if (acks.length > 0) {
      for (let i = 0; i < acks.length; i += 500) this.#deps.transport()?.ack(acks.slice(i, i + 500));
      this.#deps.emit("acked", acks);
    }
    return ok;
  }

  #remember(id: string): void {
    this.#handled.add(id);
    const max = this.#deps.dedupWindow ?? 10_000;
    if (this.#handled.size > max) this.#handled.delete(this.#handled.values().next().value as string);
  }
}
