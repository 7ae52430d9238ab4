import type { MailboxUsage } from "../backends/mailbox.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";

export interface QuotaOptions {
  /** The store's per-recipient counters (Mailbox.usage): one cheap read, never a count of the mailbox. */
  readonly usage: (recipientId: Urn) => Promise<MailboxUsage>;
  /** 0 switches the message quota off. */
  readonly maxMessages: number;
  /** 0 switches the byte quota off. */
  readonly maxBytes: number;
  /** How long a read usage is reused for the same recipient; default 500 ms. */
  readonly cacheMs?: number;
  /** Recipients whose usage is cached at once; default 10,000 (the oldest is dropped first). */
  readonly cacheSize?: number;
  readonly now?: () => number;
}

/** What a refused sender is told to wait: a full mailbox drains only when its owner fetches and acks. */
export const MAILBOX_FULL_RETRY_AFTER_MS = 5_000;

interface Cached {
  count: number;
  bytes: number;
  readonly at: number;
}

/**
 * The per-recipient quota the ingress checks before it publishes (CONTRACT, "Retention, quotas and
 * purge"). It reads the mailbox as last known: a cached usage (at most `cacheMs` since the read answered, grown by
 * what this node admitted since) or the store's counters. What was in flight may take a mailbox
 * past its quota; what is admitted is always stored. Ephemeral messages are never checked (the
 * caller skips them): they are never stored.
 */
export function createQuota(opts: QuotaOptions) {
  const cacheMs = opts.cacheMs ?? 500;
  const cacheSize = opts.cacheSize ?? 10_000;
  const now = opts.now ?? Date.now;
  const cache = new Map<Urn, Cached>();
  /** Reads of the store under way, one per recipient: admits arriving meanwhile wait for it and count into the same entry. */
  const reading = new Map<Urn, Promise<Cached>>();
  const enabled = opts.maxMessages > 0 || opts.maxBytes > 0;

  async function read(recipientId: Urn): Promise<Cached> {
    const usage = await opts.usage(recipientId);
    // Stamped when the read answers, not when it was asked: a read slower than `cacheMs` (a cold
    // client) would otherwise cache an entry already expired, the admit counted into it would be
    // lost to the next read (which cannot see that message before it is stored), and the mailbox
    // could go past its quota for a whole cache window after everything landed.
    const fresh: Cached = { count: usage.count, bytes: usage.bytes, at: now() };
    cache.delete(recipientId);
    cache.set(recipientId, fresh);
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value as Urn);
    return fresh;
  }

  function current(recipientId: Urn): Promise<Cached> {
    const hit = cache.get(recipientId);
    if (hit !== undefined && now() - hit.at < cacheMs) return Promise.resolve(hit);
    const pending = reading.get(recipientId);
    if (pending !== undefined) return pending;
    const started: Promise<Cached> = read(recipientId).finally(() => {
      if (reading.get(recipientId) === started) reading.delete(recipientId);
    });
    reading.set(recipientId, started);
    return started;
  }

  return {
    enabled,
    /** Resolves when a message of `bytes` to `recipientId` may be accepted; rejects with MAILBOX_FULL otherwise. */
    async admit(recipientId: Urn, bytes: number): Promise<void> {
      if (!enabled) return;
      const usage = await current(recipientId);
      const full = (opts.maxMessages > 0 && usage.count >= opts.maxMessages) || (opts.maxBytes > 0 && usage.bytes >= opts.maxBytes);
      if (full) {
        throw new RoutingError("MAILBOX_FULL", "the recipient's mailbox is full; retry later", { retryAfterMs: MAILBOX_FULL_RETRY_AFTER_MS });
      }
      usage.count += 1;
      usage.bytes += bytes;
    },
  };
}

export type Quota = ReturnType<typeof createQuota>;
