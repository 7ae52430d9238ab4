import { HIGH_PRIORITY } from "../core/envelope.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import {
  DEFAULT_RETENTION_MS,
  type Mailbox,
  type MailboxDepth,
  type MailboxEntry,
  type MailboxOptions,
  type MailboxPurged,
  type MailboxUsage,
  type StoreOutcome,
} from "./mailbox.ts";

export interface MailboxImplOptions extends MailboxOptions {
  /** Clock for the de-duplication window (tests inject one). */
  readonly now?: () => number;
  /** How often expired de-duplication records are purged; default min(dedupTtlMs, 60 s). */
  readonly purgeIntervalMs?: number;
}

/** A mailbox that can also be told to purge expired de-duplication records now. */
export interface PurgingMailbox extends Mailbox {
  /** Deletes expired de-duplication records; resolves with how many. */
  purgeExpired(): Promise<number>;
}

/** The reference mailbox (not durable): tests, and the semantics every other one must match. */
export function createMemoryMailbox(opts: MailboxImplOptions): PurgingMailbox {
  return new MemoryMailbox(opts);
}

function isHigh(priority: number): boolean {
  return priority >= HIGH_PRIORITY;
}

interface Stored {
  readonly entry: MailboxEntry;
  readonly seq: number;
  readonly bytes: number;
}

class MemoryMailbox implements PurgingMailbox {
  #ttlMs: number;
  #retentionMs: number;
  #now: () => number;
  #open = true;
  #seq = 0;
  #boxes = new Map<Urn, Map<string, Stored>>();
  /** recipient -> messageId -> expiresAt */
  #dedup = new Map<Urn, Map<string, number>>();
  #purgeTimer: NodeJS.Timeout;

  constructor(opts: MailboxImplOptions) {
    this.#ttlMs = opts.dedupTtlMs;
    this.#retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.#now = opts.now ?? Date.now;
    this.#purgeTimer = setInterval(
      () => {
        this.purgeExpired().catch(() => undefined);
      },
      opts.purgeIntervalMs ?? Math.min(opts.dedupTtlMs, 60_000),
    );
    this.#purgeTimer.unref();
  }

  async store(entry: MailboxEntry): Promise<StoreOutcome> {
    this.#check("mailbox store");
    const now = this.#now();
    let seen = this.#dedup.get(entry.recipientId);
    const expiresAt = seen?.get(entry.messageId);
    if (expiresAt !== undefined && expiresAt > now) return "duplicate";
    if (seen === undefined) this.#dedup.set(entry.recipientId, (seen = new Map()));
    seen.set(entry.messageId, now + this.#ttlMs);
    let box = this.#boxes.get(entry.recipientId);
    if (box === undefined) this.#boxes.set(entry.recipientId, (box = new Map()));
    if (box.has(entry.messageId)) return "duplicate";
    box.set(entry.messageId, { entry: { ...entry }, seq: ++this.#seq, bytes: Buffer.byteLength(entry.envelope) });
    return "stored";
  }

  async fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    this.#check("mailbox fetch");
    if (limit <= 0) return [];
    const box = this.#boxes.get(recipientId);
    if (box === undefined) return [];
    const cutoff = this.#cutoff();
    return [...box.values()]
      .filter((s) => s.entry.queuedAt > cutoff)
      .sort((a, b) => Number(isHigh(b.entry.priority)) - Number(isHigh(a.entry.priority)) || a.seq - b.seq)
      .slice(0, limit)
      .map((s) => ({ ...s.entry }));
  }

  async ack(recipientId: Urn, messageIds: readonly string[]): Promise<number> {
    this.#check("mailbox ack");
    const box = this.#boxes.get(recipientId);
    if (box === undefined) return 0;
    let removed = 0;
    for (const id of messageIds) if (box.delete(id)) removed++;
    if (box.size === 0) this.#boxes.delete(recipientId);
    return removed;
  }

  async depth(recipientId: Urn): Promise<MailboxDepth> {
    this.#check("mailbox depth");
    const box = this.#boxes.get(recipientId);
    const cutoff = this.#cutoff();
    let oldest: number | undefined;
    let count = 0;
    for (const s of box?.values() ?? []) {
      if (s.entry.queuedAt <= cutoff) continue;
      count++;
      if (oldest === undefined || s.entry.queuedAt < oldest) oldest = s.entry.queuedAt;
    }
    return { count, oldestQueuedAt: oldest };
  }

  async usage(recipientId: Urn): Promise<MailboxUsage> {
    this.#check("mailbox usage");
    const box = this.#boxes.get(recipientId);
    let bytes = 0;
    for (const s of box?.values() ?? []) bytes += s.bytes;
    return { count: box?.size ?? 0, bytes };
  }

  async largest(limit: number): Promise<number[]> {
    this.#check("mailbox largest");
    return [...this.#boxes.values()]
      .map((b) => b.size)
      .filter((n) => n > 0)
      .sort((a, b) => b - a)
      .slice(0, Math.max(0, limit));
  }

  async expire(limit: number): Promise<number> {
    this.#check("mailbox expire");
    const cutoff = this.#cutoff();
    let removed = 0;
    for (const [recipient, box] of this.#boxes) {
      for (const [id, s] of box) {
        if (removed >= limit) return removed;
        if (s.entry.queuedAt > cutoff) continue;
        box.delete(id);
        removed++;
      }
      if (box.size === 0) this.#boxes.delete(recipient);
    }
    return removed;
  }

  async purge(recipientId: Urn): Promise<MailboxPurged> {
    this.#check("mailbox purge");
    const messages = this.#boxes.get(recipientId)?.size ?? 0;
    const dedup = this.#dedup.get(recipientId)?.size ?? 0;
    this.#boxes.delete(recipientId);
    this.#dedup.delete(recipientId);
    return { messages, dedup };
  }

  #cutoff(): number {
    return this.#now() - this.#retentionMs;
  }

  /** O(recipients): one size read per non-empty mailbox. */
  async totalDepth(): Promise<number> {
    this.#check("mailbox total depth");
    let total = 0;
    for (const box of this.#boxes.values()) total += box.size;
    return total;
  }

  async purgeExpired(): Promise<number> {
    this.#check("mailbox purge");
    const now = this.#now();
    let removed = 0;
    for (const [recipient, seen] of this.#dedup) {
      for (const [id, expiresAt] of seen) {
        if (expiresAt <= now) {
          seen.delete(id);
          removed++;
        }
      }
      if (seen.size === 0) this.#dedup.delete(recipient);
    }
    return removed;
  }

  async ready(): Promise<boolean> {
    return this.#open;
  }

  async close(): Promise<void> {
    this.#open = false;
    clearInterval(this.#purgeTimer);
  }

  #check(what: string): void {
    if (!this.#open) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
  }
}
