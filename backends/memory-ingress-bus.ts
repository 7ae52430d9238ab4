import type { DeadLetter, IngressBus } from "./ingress-bus.ts";
import type { Appended, BusJournal, JournaledBusOptions, JournalEntry } from "./bus-journal.ts";
import { createJournaledBus } from "./journaled-bus.ts";

/** The reference bus: the delivery engine with a journal that keeps nothing beyond the process. */
export function createMemoryIngressBus(opts: JournaledBusOptions): IngressBus {
  return createJournaledBus(new MemoryJournal(), opts);
}

function deadLetterOf(entry: JournalEntry, reason: string, deadAt: number): DeadLetter {
  return { id: String(entry.seq), record: entry.record, attempts: entry.attempts, reason, deadAt };
}

class MemoryJournal implements BusJournal {
  #seq = 0;
  #dead: DeadLetter[] = [];

  recover(): JournalEntry[] {
    return [];
  }
  append(): Promise<Appended> {
    return Promise.resolve({ seq: ++this.#seq, durable: Promise.resolve() });
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
  setAttempts(): Promise<void> {
    return Promise.resolve();
  }
  deadLetter(entry: JournalEntry, reason: string, deadAt: number): Promise<void> {
    this.#dead.push(deadLetterOf(entry, reason, deadAt));
    return Promise.resolve();
  }
  deadLetterCount(): number {
    return this.#dead.length;
  }
  deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return Promise.resolve([]);
    return Promise.resolve(this.#dead.slice(Math.max(0, this.#dead.length - limit)).reverse());
  }
  revive(ids: readonly string[], enqueuedAt: number): Promise<JournalEntry[]> {
    const wanted = new Set(ids);
    const revived = this.#dead.filter((d) => wanted.has(d.id)).map((d) => ({ seq: ++this.#seq, record: d.record, attempts: 0, enqueuedAt }));
    this.#dead = this.#dead.filter((d) => !wanted.has(d.id));
    return Promise.resolve(revived);
  }
  drop(ids: readonly string[]): Promise<number> {
    const wanted = new Set(ids);
    const before = this.#dead.length;
    this.#dead = this.#dead.filter((d) => !wanted.has(d.id));
    return Promise.resolve(before - this.#dead.length);
  }
  ready(): boolean {
    return true;
  }
}
