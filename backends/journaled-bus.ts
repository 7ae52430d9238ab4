import { jitteredDelayMs } from "../core/backoff.ts";
import { RoutingError, unavailable } from "../core/errors.ts";
import type { BusJournal, JournaledBusOptions, JournalEntry } from "./bus-journal.ts";
import { type BusRecord, type BusStats, type BusSubscription, type DeadLetter, type Delivery, type IngressBus } from "./ingress-bus.ts";
import { SlotDelivery, type Consumer, type Slot, type SlotOps } from "./journal-slot.ts";

/** Deliveries handed out per event-loop turn, so a deep backlog never starves I/O. */
const DELIVERY_BATCH = 256;

/** The delivery engine over any journal; durable buses (SQLite) plug theirs in here. */
export function createJournaledBus(journal: BusJournal, opts: JournaledBusOptions): IngressBus {
  return new JournaledBus(journal, opts);
}

/**
 * The delivery engine: the working set in memory, every state change told to the journal. Slots are
 * delivered in journal order from a ready queue, a few hundred per event-loop turn; a nack waits
 * `jitteredDelayMs` on an unref'd timer, and the `maxAttempts`-th moves the record to the dead letters.
 */
class JournaledBus implements IngressBus {
  #journal: BusJournal;
  #maxAttempts: number;
  #retryBaseMs: number;
  #now: () => number;
  /** Every unacked record, in (roughly) enqueue order. */
  #slots = new Map<number, Slot>();
  #ready: Slot[] = [];
  #readyHead = 0;
  #inFlight = new Set<Slot>();
  #consumer: Consumer | undefined;
  #scheduled = false;
  #deliveryIds = 0;
  #closed = false;
  #ops: SlotOps = { ack: (slot) => this.#ack(slot), nack: (slot, id, reason) => this.#nack(slot, id, reason) };

  constructor(journal: BusJournal, opts: JournaledBusOptions) {
    this.#journal = journal;
    this.#maxAttempts = opts.maxAttempts;
    this.#retryBaseMs = opts.retryBaseMs;
    this.#now = opts.now ?? Date.now;
    for (const entry of journal.recover()) {
      const slot = this.#slotOf(entry);
      this.#slots.set(slot.seq, slot);
      this.#ready.push(slot);
    }
  }

  async publish(record: BusRecord): Promise<void> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    const enqueuedAt = this.#now();
    try {
      const { seq, durable } = await this.#journal.append(record, enqueuedAt);
      // Routed once committed, answered once durable: whatever the consumer makes durable for it (a
      // mailbox store, the ack) comes later in the journal's order, so a power loss in between
      // loses the route's steps with the record, never the record after its route was acked. The
      // publisher retries a publish that fails here; the mailbox's de-duplication absorbs the repeat.
      const slot = this.#newSlot(seq, record, 0, enqueuedAt);
      this.#slots.set(seq, slot);
      this.#ready.push(slot);
      this.#schedule();
      await durable;
    } catch (err) {
      throw err instanceof RoutingError ? err : unavailable("ingress bus: publish failed", err);
    }
  }

  consume(handler: (delivery: Delivery) => void): BusSubscription {
    if (this.#closed) throw unavailable("ingress bus: closed");
    if (this.#consumer !== undefined) throw new Error("ingress bus: one consumer per bus instance");
    const consumer: Consumer = { handler, paused: false };
    this.#consumer = consumer;
    this.#schedule();
    return {
      pause: () => {
        consumer.paused = true;
      },
      resume: () => {
        consumer.paused = false;
        this.#schedule();
      },
      close: async () => {
        this.#release(consumer);
      },
    };
  }

  backlogNow(): number {
    return this.#slots.size;
  }

  async stats(): Promise<BusStats> {
    const oldest = this.#slots.values().next().value;
    return {
      backlog: this.#slots.size,
      inFlight: this.#inFlight.size,
      deadLetters: this.#journal.deadLetterCount(),
      oldestUnackedAgeMs: oldest === undefined ? 0 : Math.max(0, this.#now() - oldest.enqueuedAt),
    };
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    try {
      return await this.#journal.deadLetters(limit);
    } catch (err) {
      throw unavailable("ingress bus: dead letters unavailable", err);
    }
  }

  async replayDeadLetters(ids: readonly string[]): Promise<number> {
    if (this.#closed) throw unavailable("ingress bus: closed");
    let entries: JournalEntry[];
    try {
      entries = await this.#journal.revive(ids, this.#now());
    } catch (err) {
      throw unavailable("ingress bus: replay failed", err);
    }
    for (const entry of entries) {
      const slot = this.#slotOf(entry);
      this.#slots.set(slot.seq, slot);
      this.#ready.push(slot);
    }
    this.#schedule();
    return entries.length;
  }

  async dropDeadLetters(ids: readonly string[]): Promise<number> {
    try {
      return await this.#journal.drop(ids);
    } catch (err) {
      throw unavailable("ingress bus: dropping dead letters failed", err);
    }
  }

  async ready(): Promise<boolean> {
    return !this.#closed && this.#journal.ready();
  }

  /** Stops deliveries; unacked records stay in the journal. Acks of in-flight deliveries still count. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#consumer !== undefined) this.#release(this.#consumer);
    for (const slot of this.#slots.values()) {
      if (slot.timer !== undefined) clearTimeout(slot.timer);
      slot.timer = undefined;
      if (slot.state === "waiting") slot.state = "ready";
    }
  }

  #slotOf(entry: JournalEntry): Slot {
    return this.#newSlot(entry.seq, entry.record, entry.attempts, entry.enqueuedAt);
  }

  /** Field by field, not by spreading an entry: one slot per message, and spreads are slow. */
  #newSlot(seq: number, record: BusRecord, attempts: number, enqueuedAt: number): Slot {
    return { seq, record, enqueuedAt, attempts, state: "ready", delivery: 0, consumer: undefined, timer: undefined, removal: undefined };
  }

  #schedule(): void {
    const consumer = this.#consumer;
    if (this.#scheduled || this.#closed || consumer === undefined || consumer.paused) return;
    if (this.#readyHead >= this.#ready.length) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    for (let n = 0; n < DELIVERY_BATCH; n++) {
      const consumer = this.#consumer;
      if (consumer === undefined || consumer.paused || this.#closed) return;
      const slot = this.#takeReady();
      if (slot === undefined) return;
      this.#deliver(consumer, slot);
    }
    this.#schedule();
  }

  #takeReady(): Slot | undefined {
    while (this.#readyHead < this.#ready.length) {
      const slot = this.#ready[this.#readyHead++];
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready = this.#ready.slice(this.#readyHead);
        this.#readyHead = 0;
      }
      // Acked or re-queued meanwhile: the queue may hold stale references.
      if (slot.state === "ready" && this.#slots.get(slot.seq) === slot) return slot;
    }
    return undefined;
  }

  #deliver(consumer: Consumer, slot: Slot): void {
    const id = ++this.#deliveryIds;
    slot.state = "inflight";
    slot.delivery = id;
    slot.consumer = consumer;
    this.#inFlight.add(slot);
    const delivery = new SlotDelivery(this.#ops, slot, id);
    try {
      consumer.handler(delivery);
    } catch {
      // A throwing handler failed this attempt; the retry path is the same as for a nack.
      this.#nack(slot, id, "handler threw").catch(() => undefined);
    }
  }

  #ack(slot: Slot): Promise<void> {
    if (slot.removal !== undefined) return slot.removal;
    // Dead-lettered, or a stale delivery of a record acked by an earlier one.
    if (this.#slots.get(slot.seq) !== slot) return Promise.resolve();
    this.#drop(slot);
    slot.removal = this.#journal.remove(slot.seq).catch((err: unknown) => {
      // Not forgotten durably: keep delivering it rather than lose it.
      slot.removal = undefined;
      this.#requeue(slot);
      throw unavailable("ingress bus: ack failed", err);
    });
    return slot.removal;
  }

  async #nack(slot: Slot, id: number, reason: string): Promise<void> {
    // Only the current delivery can fail a record; a stale one was already returned to the bus.
    if (slot.state !== "inflight" || slot.delivery !== id || this.#slots.get(slot.seq) !== slot) return;
    slot.attempts += 1;
    if (slot.attempts >= this.#maxAttempts) {
      this.#drop(slot);
      try {
        await this.#journal.deadLetter(slot, reason, this.#now());
      } catch (err) {
        this.#requeue(slot);
        throw unavailable("ingress bus: dead-lettering failed", err);
      }
      return;
    }
    this.#inFlight.delete(slot);
    slot.consumer = undefined;
    slot.state = "waiting";
    slot.timer = setTimeout(
      () => {
        slot.timer = undefined;
        if (slot.state !== "waiting" || this.#closed) return;
        slot.state = "ready";
        this.#ready.push(slot);
        this.#schedule();
      },
      jitteredDelayMs(this.#retryBaseMs, slot.attempts),
    );
    slot.timer.unref();
    try {
      await this.#journal.setAttempts(slot.seq, slot.attempts);
    } catch (err) {
      throw unavailable("ingress bus: nack failed", err);
    }
  }

  /** A closing consumer's unacked deliveries go back to the front of the queue. */
  #release(consumer: Consumer): void {
    if (this.#consumer !== consumer) return;
    this.#consumer = undefined;
    const returned = [...this.#inFlight].filter((s) => s.consumer === consumer).sort((a, b) => a.seq - b.seq);
    for (const slot of returned) {
      this.#inFlight.delete(slot);
      slot.state = "ready";
      slot.delivery = 0;
      slot.consumer = undefined;
    }
    this.#ready = [...returned, ...this.#ready.slice(this.#readyHead)];
    this.#readyHead = 0;
  }

  #drop(slot: Slot): void {
    if (slot.timer !== undefined) clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.state = "gone";
    slot.consumer = undefined;
    this.#inFlight.delete(slot);
    this.#slots.delete(slot.seq);
  }

  #requeue(slot: Slot): void {
    slot.state = "ready";
    slot.delivery = 0;
    this.#slots.set(slot.seq, slot);
    this.#ready.push(slot);
    this.#schedule();
  }
}
