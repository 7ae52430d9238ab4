import type { Urn } from "../core/urn.ts";
import type { MailboxDepth, MailboxEntry, StoreOutcome } from "./mailbox.ts";
import type { MailboxImplOptions, PurgingMailbox } from "./memory-mailbox.ts";
import { guarded, type SqliteDb } from "./sqlite-db.ts";

/** Rows deleted per purge transaction, so a large purge never holds the writer for long. */
const PURGE_BATCH = 5_000;

export function createSqliteMailbox(db: SqliteDb, opts: MailboxImplOptions): PurgingMailbox {
  return new SqliteMailbox(db, opts);
}

interface EntryRow {
  readonly message_id: string;
  readonly priority: number;
  readonly envelope: string;
  readonly queued_at: number;
}

class SqliteMailbox implements PurgingMailbox {
  #db: SqliteDb;
  #ttlMs: number;
  #now: () => number;
  #open = true;
  #purgeTimer: NodeJS.Timeout;
  #dedup;
  #insert;
  #fetch;
  #ack;
  #depth;
  #totalDepth;
  #purge;

  constructor(db: SqliteDb, opts: MailboxImplOptions) {
    this.#db = db;
    this.#ttlMs = opts.dedupTtlMs;
    this.#now = opts.now ?? Date.now;
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
    this.#fetch = db.statement<[Urn, number], EntryRow>(
      "SELECT message_id, priority, envelope, queued_at FROM mailbox WHERE recipient_id = ? ORDER BY high DESC, seq ASC LIMIT ?",
    );
    this.#ack = db.statement<[Urn, string]>(
      "DELETE FROM mailbox WHERE recipient_id = ? AND message_id IN (SELECT value FROM json_each(?))",
    );
    this.#depth = db.statement<[Urn], { count: number; oldest: number | null }>(
      "SELECT count(*) AS count, min(queued_at) AS oldest FROM mailbox WHERE recipient_id = ?",
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
    return guarded("mailbox store", this.#open, () => {
      const now = this.#now();
      return this.#db.write((): StoreOutcome => {
        if (this.#dedup.run(entry.recipientId, entry.messageId, now + this.#ttlMs, now).changes === 0) return "duplicate";
        const inserted = this.#insert.run(entry.recipientId, entry.messageId, entry.priority, entry.envelope, entry.queuedAt);
        return inserted.changes === 0 ? "duplicate" : "stored";
      });
    });
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return guarded("mailbox fetch", this.#open, () => {
      if (limit <= 0) return [];
      return this.#fetch.all(recipientId, limit).map((row) => ({
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
      return this.#db.writeStatement(() => this.#ack.run(recipientId, ids).changes);
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return guarded("mailbox depth", this.#open, () => {
      const row = this.#depth.get(recipientId);
      return { count: row?.count ?? 0, oldestQueuedAt: row?.oldest ?? undefined };
    });
  }

  totalDepth(): Promise<number> {
    return guarded("mailbox total depth", this.#open, () => this.#totalDepth.get()?.count ?? 0);
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
