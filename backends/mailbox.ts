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

/** What a recipient's mailbox holds, as the store keeps it (a counter, not a count per read). */
export interface MailboxUsage {
  readonly count: number;
  /** UTF-8 bytes of the stored envelopes. */
  readonly bytes: number;
}

/** What `purge` removed. */
export interface MailboxPurged {
  readonly messages: number;
  /** De-duplication records (acked messages' included). */
  readonly dedup: number;
}

/** Default retention when none is given: 30 days (CONTRACT, "Retention, quotas and purge"). */
export const DEFAULT_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** A store answered once visible, with its durability to follow (`Mailbox.storeVisible`). */
export interface VisibleStore {
  readonly outcome: StoreOutcome;
  /** Resolves once the store is durable; rejects if that failed. */
  readonly durable: Promise<void>;
}

/**
 * Per-recipient mailboxes with de-duplication.
 *
 * Guarantees:
 * - `store` is atomic and durable before it resolves: de-duplication record and message together
 *   (`storeVisible`, where a store has it: atomic and visible when it resolves, durable when its
 *   `durable` does).
 *   The same (recipientId, messageId) stored again within the de-duplication window, acked or not,
 *   resolves "duplicate" and changes nothing.
 * - `fetch` returns unacked messages, high priority (>= 5) first, then oldest first (by store
 *   order), up to `limit`. It does not remove them: every fetch returns them until acked.
 * - `ack` is durable before it resolves, idempotent, and ignores unknown ids and other recipients'.
 * - Retention: a message whose queuedAt is `retentionMs` or more before now is never returned by
 *   `fetch` nor counted by `depth`, whether or not `expire` has removed it yet. `expire` removes such
 *   messages by the store's own means, in small steps that never hold the store for long.
 * - `usage` reads counters the store keeps with every store, ack, expiry and purge (cheap: no count
 *   of the mailbox); expired messages not yet removed still count.
 * - `purge` removes everything the store holds of one recipient (messages, de-duplication records,
 *   counters); idempotent. A store running alongside it either survives whole (message and
 *   de-duplication record) or is removed whole: never half.
 */
export interface Mailbox {
  store(entry: MailboxEntry): Promise<StoreOutcome>;
  /**
   * Optional: `store`, answered as soon as the message is visible to `fetch` and survives a process
   * crash, before it survives a power loss; `durable` resolves once it does. For a store whose
   * durability comes later than its commit (SQLite with `full`). The router signals the recipient on
   * the outcome and acks the bus record only after `durable`: a power loss in between loses the
   * stored message but not the bus record, which is routed again (the recipient may see the message
   * twice, as after any redelivery). A store without it is used through `store`.
   */
  storeVisible?(entry: MailboxEntry): Promise<VisibleStore>;
  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]>;
  /** Returns how many messages were actually removed. */
  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number>;
  depth(recipientId: Urn): Promise<MailboxDepth>;
  /**
   * Unacked messages across every recipient, for the `routing_mailbox_depth` gauge (read once per
   * scrape). Optional: a store that cannot count cheaply leaves it out and the gauge is not set.
   */
  totalDepth?(): Promise<number>;
  usage(recipientId: Urn): Promise<MailboxUsage>;
  /** The `limit` largest mailboxes' message counts, largest first (counts only: for metrics and the status page). */
  largest(limit: number): Promise<number[]>;
  /** Removes up to `limit` expired messages (see retention); resolves with how many. */
  expire(limit: number): Promise<number>;
  purge(recipientId: Urn): Promise<MailboxPurged>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

export interface MailboxOptions {
  /** How long a (recipient, messageId) pair is remembered for de-duplication, in ms. */
  readonly dedupTtlMs: number;
  /** Messages older than this are never fetched and are removed by `expire`; default DEFAULT_RETENTION_MS. */
  readonly retentionMs?: number;
  /** Told how many expired messages a fetch removed on its way (the `expire` calls' counts are their results). */
  readonly onExpired?: (count: number) => void;
}
