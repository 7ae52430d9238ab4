import type { Urn } from "../core/urn.ts";
import {
  DEFAULT_RETENTION_MS,
  type MailboxDepth,
  type MailboxEntry,
  type MailboxPurged,
  type MailboxUsage,
  type StoreOutcome,
  type VisibleStore,
} from "./mailbox.ts";
import type { MailboxImplOptions, PurgingMailbox } from "./memory-mailbox.ts";
import { unavailable } from "../core/errors.ts";
import { guarded } from "./guarded.ts";
import type { SqliteDb } from "./sqlite-db.ts";
import { UsageRows } from "./sqlite-mailbox-usage.ts";

/** Rows deleted per purge transaction, so a large purge never holds the writer for long. */
const PURGE_BATCH = 5_000;
/**
 * Messages deleted per expiry or per-recipient purge transaction: 500 keep one transaction to a few
 * milliseconds (each recipient's usage row is updated once per transaction), and each
 * batch is its own group commit, so sends and acks queued meanwhile commit between two batches.
 */
export const MESSAGE_DELETE_BATCH = 500;

export function createSqliteMailbox(db: SqliteDb, opts: MailboxImplOptions): PurgingMailbox {
  return new SqliteMailbox(db, opts);
}

interface EntryRow {
  readonly message_id: string;
  readonly priority: number;
  readonly envelope: string;
  readonly queued_at: number;
}

interface DeletedRow {
  readonly recipient_id: Urn;
  readonly message_id: string;
  readonly bytes: number;
}

class SqliteMailbox implements PurgingMailbox {
  #db: SqliteDb;
  #ttlMs: number;
  #retentionMs: number;
  #now: () => number;
  #open = true;
  #usageRows: UsageRows;
  #purgeTimer: NodeJS.Timeout;
  #dedup;
  #insert;
  #fetch;
  #ack;
  #depth;
  #totalDepth;
  #purge;
  #usage;
  #largest;
  #expire;
  #purgeMessages;
  #purgeDedupOf;
  #purgeDedup;

  constructor(db: SqliteDb, opts: MailboxImplOptions) {
    this.#db = db;
    this.#ttlMs = opts.dedupTtlMs;
    this.#retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.#now = opts.now ?? Date.now;
    this.#usageRows = new UsageRows(db);
    // An expired record is revived in place, so it counts as new; a live one is a duplicate (0 changes).
    this.#dedup = db.statement<[Urn, string, number, number]>(
      `INSERT INTO mailbox_dedup (recipient_id, message_id, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (recipient_id, message_id) DO UPDATE SET expires_at = excluded.expires_at
       WHERE mailbox_dedup.expires_at <= ?`,
    );
    // Ignored only when the dedup window lapsed while the message was still unacked: a duplicate too.
    this.#insert = db.statement<[Urn, string, number, string, number]>(
      "INSERT OR IGNORE INTO mailbox (recipient_id, message_id, priority, envelope, queued_at) VALUES (?, ?, ?, ?, ?)",
    );
    // Expired rows not yet deleted are skipped here; the fetch index still drives the order.
    this.#fetch = db.statement<[Urn, number, number], EntryRow>(
      "SELECT message_id, priority, envelope, queued_at FROM mailbox WHERE recipient_id = ? AND queued_at > ? ORDER BY high DESC, seq ASC LIMIT ?",
    );
    // Each statement that deletes messages returns their sizes, for the usage rows (UsageRows).
    this.#ack = db
      .statement<[Urn, string], number>(
        "DELETE FROM mailbox WHERE recipient_id = ? AND message_id IN (SELECT value FROM json_each(?)) RETURNING length(CAST(envelope AS BLOB))",
      )
      .pluck();
    this.#depth = db.statement<[Urn, number], { count: number; oldest: number | null }>(
      "SELECT count(*) AS count, min(queued_at) AS oldest FROM mailbox WHERE recipient_id = ? AND queued_at > ?",
    );
    this.#usage = db.statement<[Urn], { count: number; bytes: number }>("SELECT count, bytes FROM mailbox_usage WHERE recipient_id = ?");
    this.#largest = db.statement<[number], number>("SELECT count FROM mailbox_usage ORDER BY count DESC LIMIT ?").pluck();
    // Oldest first through the queued_at index: each batch reads only rows it deletes.
    this.#expire = db.statement<[number, number], DeletedRow>(
      "DELETE FROM mailbox WHERE seq IN (SELECT seq FROM mailbox WHERE queued_at <= ? ORDER BY queued_at LIMIT ?) RETURNING recipient_id, length(CAST(envelope AS BLOB)) AS bytes",
    );
    this.#purgeMessages = db.statement<[Urn, number], DeletedRow>(
      "DELETE FROM mailbox WHERE seq IN (SELECT seq FROM mailbox WHERE recipient_id = ? LIMIT ?) RETURNING recipient_id, message_id, length(CAST(envelope AS BLOB)) AS bytes",
    );
    this.#purgeDedupOf = db.statement<[Urn, string]>("DELETE FROM mailbox_dedup WHERE recipient_id = ? AND message_id IN (SELECT value FROM json_each(?))");
    // Records whose message is gone (acked, expired, purged); one stored meanwhile keeps both.
    this.#purgeDedup = db.statement<[Urn, number]>(
      `DELETE FROM mailbox_dedup WHERE (recipient_id, message_id) IN
       (SELECT d.recipient_id, d.message_id FROM mailbox_dedup d WHERE d.recipient_id = ?
        AND NOT EXISTS (SELECT 1 FROM mailbox m WHERE m.recipient_id = d.recipient_id AND m.message_id = d.message_id) LIMIT ?)`,
    );
    // One scan of the smallest index per scrape (WAL readers never block the writer).
    this.#totalDepth = db.statement<[], { count: number }>("SELECT count(*) AS count FROM mailbox");
    this.#purge = db.statement<[number, number]>(
      `DELETE FROM mailbox_dedup WHERE (recipient_id, message_id) IN
       (SELECT recipient_id, message_id FROM mailbox_dedup WHERE expires_at <= ? LIMIT ?)`,
    );
    const interval = opts.purgeIntervalMs ?? Math.min(opts.dedupTtlMs, 60_000);
    this.#purgeTimer = setInterval(() => {
      // A failed purge is retried by the next tick; nothing depends on it having run.
      this.purgeExpired().catch(() => undefined);
    }, interval);
    this.#purgeTimer.unref();
  }

  store(entry: MailboxEntry): Promise<StoreOutcome> {
    return guarded("mailbox store", this.#open, () => this.#db.write(this.#storing(entry)));
  }

  storeVisible(entry: MailboxEntry): Promise<VisibleStore> {
    return guarded("mailbox store", this.#open, async () => {
      const { value, durable } = await this.#db.writeVisible(this.#storing(entry));
      const failed = durable.catch((err: unknown) => {
        throw unavailable("mailbox store failed", err);
      });
      failed.catch(() => undefined); // the router awaits it; none may be left unhandled
      return { outcome: value, durable: failed };
    });
  }

  /** The store's statements: de-duplication record and message together (one savepoint). */
  #storing(entry: MailboxEntry): () => StoreOutcome {
    const now = this.#now();
    return () => {
      if (this.#dedup.run(entry.recipientId, entry.messageId, now + this.#ttlMs, now).changes === 0) return "duplicate";
      const inserted = this.#insert.run(entry.recipientId, entry.messageId, entry.priority, entry.envelope, entry.queuedAt);
      if (inserted.changes === 0) return "duplicate";
      this.#usageRows.add(entry.recipientId, 1, Buffer.byteLength(entry.envelope));
      return "stored";
    };
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return guarded("mailbox fetch", this.#open, () => {
      if (limit <= 0) return [];
      return this.#fetch.all(recipientId, this.#cutoff(), limit).map((row) => ({
        recipientId,
        messageId: row.message_id,
        priority: row.priority,
        envelope: row.envelope,
        queuedAt: row.queued_at,
      }));
    });
  }

  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number> {
    return guarded("mailbox ack", this.#open, () => {
      if (messageIds.length === 0) return 0;
      const ids = JSON.stringify(messageIds);
      return this.#db.writeStatement(() => {
        const sizes = this.#ack.all(recipientId, ids);
        if (sizes.length > 0) this.#usageRows.add(recipientId, -sizes.length, -sizes.reduce((sum, n) => sum + n, 0));
        return sizes.length;
      });
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return guarded("mailbox depth", this.#open, () => {
      const row = this.#depth.get(recipientId, this.#cutoff());
      return { count: row?.count ?? 0, oldestQueuedAt: row?.oldest ?? undefined };
    });
  }

  totalDepth(): Promise<number> {
    return guarded("mailbox total depth", this.#open, () => this.#totalDepth.get()?.count ?? 0);
  }

  usage(recipientId: Urn): Promise<MailboxUsage> {
    return guarded("mailbox usage", this.#open, () => {
      const row = this.#usage.get(recipientId);
      return { count: row?.count ?? 0, bytes: row?.bytes ?? 0 };
    });
  }

  largest(limit: number): Promise<number[]> {
    return guarded("mailbox largest", this.#open, () => (limit > 0 ? this.#largest.all(limit) : []));
  }

  /** Batches of MESSAGE_DELETE_BATCH, each its own short write, until `limit` or nothing expired is left. */
  expire(limit: number): Promise<number> {
    return guarded("mailbox expire", this.#open, async () => {
      const cutoff = this.#cutoff();
      let total = 0;
      while (total < limit) {
        const batch = Math.min(MESSAGE_DELETE_BATCH, limit - total);
        const removed = await this.#db.writeStatement(() => this.#deleted(this.#expire.all(cutoff, batch)).length);
        total += removed;
        if (removed < batch) break;
      }
      return total;
    });
  }

  purge(recipientId: Urn): Promise<MailboxPurged> {
    return guarded("mailbox purge", this.#open, async () => {
      let messages = 0;
      let dedup = 0;
      for (;;) {
        // A message and its de-duplication record go in the same transaction.
        const [m, d] = await this.#db.write(() => {
          const ids = this.#deleted(this.#purgeMessages.all(recipientId, MESSAGE_DELETE_BATCH)).map((row) => row.message_id);
          return [ids.length, ids.length === 0 ? 0 : this.#purgeDedupOf.run(recipientId, JSON.stringify(ids)).changes] as const;
        });
        messages += m;
        dedup += d;
        if (m < MESSAGE_DELETE_BATCH) break;
      }
      for (;;) {
        const d = await this.#db.writeStatement(() => this.#purgeDedup.run(recipientId, PURGE_BATCH).changes);
        dedup += d;
        if (d < PURGE_BATCH) break;
      }
      return { messages, dedup };
    });
  }

  /** Takes deleted messages off their recipients' usage; returns them. */
  #deleted<R extends DeletedRow>(rows: R[]): R[] {
    for (const row of rows) this.#usageRows.add(row.recipient_id, -1, -row.bytes);
    return rows;
  }

  #cutoff(): number {
    return this.#now() - this.#retentionMs;
  }

  purgeExpired(): Promise<number> {
    return guarded("mailbox purge", this.#open, async () => {
      const now = this.#now();
      let total = 0;
      for (;;) {
        const removed = await this.#db.writeStatement(() => this.#purge.run(now, PURGE_BATCH).changes);
        total += removed;
        if (removed < PURGE_BATCH) return total;
      }
    });
  }

  async ready(): Promise<boolean> {
    return this.#open && this.#db.open;
  }

  async close(): Promise<void> {
    this.#open = false;
    clearInterval(this.#purgeTimer);
  }
}
