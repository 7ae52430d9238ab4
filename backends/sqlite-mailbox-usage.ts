import type { Urn } from "../core/urn.ts";
import type { SqliteDb } from "./sqlite-db.ts";

/**
 * The `mailbox_usage` rows (the quota's per-recipient count and bytes), kept by the mailbox's own
 * writes: each adds what it stored or deleted, and the sum per recipient is written once per group
 * transaction, just before its COMMIT (one upsert per recipient instead of a trigger per row). A
 * write adds only after its statements succeeded, so a write rolled back alone adds nothing; a
 * group rolled back as a whole never reaches its `beforeCommit`, and its sums are dropped when the
 * next transaction's first write adds.
 */
export class UsageRows {
  readonly #db: SqliteDb;
  #transaction = -1;
  readonly #count = new Map<Urn, number>();
  readonly #bytes = new Map<Urn, number>();
  readonly #upsert;
  readonly #dropEmpty;

  constructor(db: SqliteDb) {
    this.#db = db;
    this.#upsert = db.statement<[Urn, number, number]>(
      `INSERT INTO mailbox_usage (recipient_id, count, bytes) VALUES (?, ?, ?)
       ON CONFLICT (recipient_id) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes`,
    );
    this.#dropEmpty = db.statement<[Urn]>("DELETE FROM mailbox_usage WHERE recipient_id = ? AND count <= 0");
    db.beforeCommit(() => this.#write());
  }

  /** Inside a write: `count` messages of `bytes` UTF-8 bytes in all were stored (negative: deleted). */
  add(recipientId: Urn, count: number, bytes: number): void {
    if (this.#transaction !== this.#db.transaction) {
      this.#count.clear();
      this.#bytes.clear();
      this.#transaction = this.#db.transaction;
    }
    this.#count.set(recipientId, (this.#count.get(recipientId) ?? 0) + count);
    this.#bytes.set(recipientId, (this.#bytes.get(recipientId) ?? 0) + bytes);
  }

  #write(): void {
    if (this.#transaction !== this.#db.transaction || this.#count.size === 0) return;
    for (const [recipientId, count] of this.#count) {
      if (count === 0 && this.#bytes.get(recipientId) === 0) continue;
      this.#upsert.run(recipientId, count, this.#bytes.get(recipientId) ?? 0);
      if (count < 0) this.#dropEmpty.run(recipientId);
    }
    this.#count.clear();
    this.#bytes.clear();
  }
}
