import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { PendingPush, PushDeadLetter, PushDue, PushQueue } from "./push-queue.ts";

/** The reference push queue (not durable). */
export function createMemoryPushQueue(): PushQueue {
  return new MemoryPushQueue();
}

class MemoryPushQueue implements PushQueue {
  #open = true;
  #seq = 0;
  /** Insertion order is queue order. */
  #pending = new Map<number, PendingPush>();
  /** Oldest first; listed newest first. */
  #dead: PushDeadLetter[] = [];

  async enqueue(due: PushDue): Promise<void> {
    this.#check("push enqueue");
    const seq = ++this.#seq;
    this.#pending.set(seq, { recipientId: due.recipientId, messageId: due.messageId, priority: due.priority, dueAt: due.dueAt, seq });
  }

  async pending(limit: number): Promise<PendingPush[]> {
    this.#check("push pending");
    const out: PendingPush[] = [];
    for (const push of this.#pending.values()) {
      if (out.length >= limit) break;
      out.push({ ...push });
    }
    return out;
  }

  async complete(seqs: readonly number[]): Promise<void> {
    this.#check("push complete");
    for (const seq of seqs) this.#pending.delete(seq);
  }

  async count(): Promise<number> {
    this.#check("push count");
    return this.#pending.size;
  }

  async deadLetter(seq: number, reason: string): Promise<void> {
    this.#check("push dead letter");
    const push = this.#pending.get(seq);
    if (push === undefined) return;
    this.#pending.delete(seq);
    this.#dead.push({ ...push, reason, deadAt: Date.now() });
  }

  async deadLetters(limit: number): Promise<PushDeadLetter[]> {
    this.#check("push dead letters");
    return [...this.#dead]
      .reverse()
      .slice(0, Math.max(0, limit))
      .map((d) => ({ ...d }));
  }

  async deadLetterCount(): Promise<number> {
    this.#check("push dead letter count");
    return this.#dead.length;
  }

  async purge(recipientId: Urn): Promise<number> {
    this.#check("push purge");
    let removed = 0;
    for (const [seq, push] of this.#pending) {
      if (push.recipientId !== recipientId) continue;
      this.#pending.delete(seq);
      removed++;
    }
    const kept = this.#dead.filter((d) => d.recipientId !== recipientId);
    removed += this.#dead.length - kept.length;
    this.#dead = kept;
    return removed;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  #check(what: string): void {
    if (!this.#open) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
  }
}
