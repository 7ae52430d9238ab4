import type { Urn } from "../core/urn.ts";
import type { PendingPush, PushDeadLetter, PushDue, PushQueue } from "./push-queue.ts";
import { guarded } from "./guarded.ts";
import type { SqliteDb } from "./sqlite-db.ts";

export function createSqlitePushQueue(db: SqliteDb): PushQueue {
  return new SqlitePushQueue(db);
}

interface PushRow {
  readonly seq: number;
  readonly recipient_id: string;
  readonly message_id: string;
  readonly priority: number;
  readonly due_at: number;
}

interface DeadRow extends PushRow {
  readonly reason: string;
  readonly dead_at: number;
}

function pushOf(row: PushRow): PendingPush {
  return { seq: row.seq, recipientId: row.recipient_id as Urn, messageId: row.message_id, priority: row.priority, dueAt: row.due_at };
}

class SqlitePushQueue implements PushQueue {
  #db: SqliteDb;
  #open = true;
  #insert;
  #pending;
  #complete;
  #count;
  #bury;
  #dead;
  #deadCount;

  constructor(db: SqliteDb) {
    this.#db = db;
    this.#insert = db.statement<[Urn, string, number, number]>("INSERT INTO push_queue (recipient_id, message_id, priority, due_at) VALUES (?, ?, ?, ?)");
    this.#pending = db.statement<[number], PushRow>("SELECT seq, recipient_id, message_id, priority, due_at FROM push_queue ORDER BY seq LIMIT ?");
    this.#complete = db.statement<[string]>("DELETE FROM push_queue WHERE seq IN (SELECT value FROM json_each(?))");
    this.#count = db.statement<[], number>("SELECT count(*) FROM push_queue").pluck();
    this.#bury = db.statement<[string, number, number]>(
      `INSERT OR IGNORE INTO push_dead_letters (seq, recipient_id, message_id, priority, due_at, reason, dead_at)
       SELECT seq, recipient_id, message_id, priority, due_at, ?, ? FROM push_queue WHERE seq = ?`,
    );
    this.#dead = db.statement<[number], DeadRow>(
      "SELECT seq, recipient_id, message_id, priority, due_at, reason, dead_at FROM push_dead_letters ORDER BY dead_at DESC, seq DESC LIMIT ?",
    );
    this.#deadCount = db.statement<[], number>("SELECT count(*) FROM push_dead_letters").pluck();
  }

  enqueue(due: PushDue): Promise<void> {
    return guarded("push enqueue", this.#open, () =>
      this.#db.writeStatement(() => {
        this.#insert.run(due.recipientId, due.messageId, due.priority, due.dueAt);
      }),
    );
  }

  pending(limit: number): Promise<PendingPush[]> {
    return guarded("push pending", this.#open, () => {
      if (limit <= 0) return [];
      return this.#pending.all(limit).map(pushOf);
    });
  }

  complete(seqs: readonly number[]): Promise<void> {
    return guarded("push complete", this.#open, async () => {
      if (seqs.length === 0) return;
      const list = JSON.stringify(seqs);
      await this.#db.writeStatement(() => {
        this.#complete.run(list);
      });
    });
  }

  count(): Promise<number> {
    return guarded("push count", this.#open, () => this.#count.get() ?? 0);
  }

  deadLetter(seq: number, reason: string): Promise<void> {
    return guarded("push dead letter", this.#open, () =>
      this.#db.write(() => {
        // One savepoint: the copy and the removal commit together or not at all.
        this.#bury.run(reason, Date.now(), seq);
        this.#complete.run(JSON.stringify([seq]));
      }),
    );
  }

  deadLetters(limit: number): Promise<PushDeadLetter[]> {
    return guarded("push dead letters", this.#open, () => {
      if (limit <= 0) return [];
      return this.#dead.all(limit).map((row) => ({ ...pushOf(row), reason: row.reason, deadAt: row.dead_at }));
    });
  }

  deadLetterCount(): Promise<number> {
    return guarded("push dead letter count", this.#open, () => this.#deadCount.get() ?? 0);
  }

  purge(recipientId: Urn): Promise<number> {
    return guarded("push purge", this.#open, () =>
      this.#db.write(
        () =>
          this.#db.statement<[Urn]>("DELETE FROM push_queue WHERE recipient_id = ?").run(recipientId).changes +
          this.#db.statement<[Urn]>("DELETE FROM push_dead_letters WHERE recipient_id = ?").run(recipientId).changes,
      ),
    );
  }

  async close(): Promise<void> {
    this.#open = false;
  }
}
