import type { Urn } from "../core/urn.ts";

export interface MailboxEntry {
  readonly recipientId: Urn;
  readonly messageId: string;
  readonly priority: number;
  /** The stamped envelope JSON, stored and returned byte-for-byte. */
  readonly envelope: string;
  /** Epoch ms. */
  readonly queuedAt: number;
}

export interface MailboxDepth {
  readonly count: number;
  /** Epoch ms of the oldest unacked message, undefined when empty. */
  readonly oldestQueuedAt: number | undefined;
}

export type StoreOutcome = "stored" | "duplicate";

/**
 * Per-recipient mailboxes with de-duplication.
 *
 * Guarantees:
 * - `store` is atomic and durable before it resolves: de-duplication record and message together.
 *   The same (recipientId, messageId) stored again within the de-duplication window, acked or not,
 *   resolves "duplicate" and changes nothing.
 * - `fetch` returns unacked messages, high priority (>= 5) first, then oldest first (by store
 *   order), up to `limit`. It does not remove them: every fetch returns them until acked.
 * - `ack` is durable before it resolves, idempotent, and ignores unknown ids and other recipients'.
 */
export interface Mailbox {
  store(entry: MailboxEntry): Promise<StoreOutcome>;
  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]>;
  /** Returns how many messages were actually removed. */
  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number>;
  depth(recipientId: Urn): Promise<MailboxDepth>;
  /**
   * Unacked messages across every recipient, for the `routing_mailbox_depth` gauge (read once per
   * scrape). Optional: a store that cannot count cheaply leaves it out and the gauge is not set.
   */
  totalDepth?(): Promise<number>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

export interface MailboxOptions {
  /** How long a (recipient, messageId) pair is remembered for de-duplication, in ms. */
  readonly dedupTtlMs: number;
}
