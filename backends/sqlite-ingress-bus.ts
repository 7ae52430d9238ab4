import type { Urn } from "../core/urn.ts";
import type { BusRecord, DeadLetter, IngressBus, IngressPath } from "./ingress-bus.ts";
import type { Appended, BusJournal, JournaledBusOptions, JournalEntry } from "./bus-journal.ts";
import { createJournaledBus } from "./journaled-bus.ts";
import type { SqliteDb } from "./sqlite-db.ts";

/**
 * The embedded durable bus: the shared delivery engine over the `bus_records` table. Every row not
 * acked is redelivered after a restart or crash. One bus per database: it owns the table's rows.
 */
export function createSqliteIngressBus(db: SqliteDb, opts: JournaledBusOptions): IngressBus {
  return createJournaledBus(new SqliteBusJournal(db), opts);
}

interface RecordRow {
  readonly seq: number;
  readonly recipient_id: string;
  readonly message_id: string;
  readonly is_ephemeral: number;
  readonly priority: number;
  readonly envelope: string;
  readonly accepted_at: number;
  readonly path: string;
  readonly attempts: number;
}

interface BusRow extends RecordRow {
  readonly enqueued_at: number;
}

interface DeadRow extends RecordRow {
  readonly reason: string;
  readonly dead_at: number;
}

type RecordColumns = [Urn, string, number, number, string, number, IngressPath];

const COLUMNS = "recipient_id, message_id, is_ephemeral, priority, envelope, accepted_at, path";

function recordOf(row: RecordRow): BusRecord {
  return {
    recipientId: row.recipient_id as Urn,
    messageId: row.message_id,
    isEphemeral: row.is_ephemeral !== 0,
    priority: row.priority,
    envelope: row.envelope,
    acceptedAt: row.accepted_at,
    path: row.path as IngressPath,
  };
}

function columnsOf(r: BusRecord): RecordColumns {
  return [r.recipientId, r.messageId, r.isEphemeral ? 1 : 0, r.priority, r.envelope, r.acceptedAt, r.path];
}

class SqliteBusJournal implements BusJournal {
  #db: SqliteDb;
  #deadCount: number;
  #insert;
  #delete;
  #setAttempts;
  #insertDead;

  constructor(db: SqliteDb) {
    this.#db = db;
    this.#insert = db.statement<[...RecordColumns, number]>(`INSERT INTO bus_records (${COLUMNS}, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#delete = db.statement<[number]>("DELETE FROM bus_records WHERE seq = ?");
    this.#setAttempts = db.statement<[number, number]>("UPDATE bus_records SET attempts = ? WHERE seq = ?");
    this.#insertDead = db.statement<[number, ...RecordColumns, number, string, number]>(
      `INSERT OR REPLACE INTO bus_dead_letters (seq, ${COLUMNS}, attempts, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#deadCount = db.statement<[], number>("SELECT count(*) FROM bus_dead_letters").pluck().get() ?? 0;
  }

  recover(): JournalEntry[] {
    const rows = this.#db.statement<[], BusRow>(`SELECT seq, ${COLUMNS}, attempts, enqueued_at FROM bus_records ORDER BY seq`).all();
    return rows.map((row) => ({ seq: row.seq, record: recordOf(row), attempts: row.attempts, enqueuedAt: row.enqueued_at }));
  }

  async append(record: BusRecord, enqueuedAt: number): Promise<Appended> {
    const { value, durable } = await this.#db.writeVisible(() => Number(this.#insert.run(...columnsOf(record), enqueuedAt).lastInsertRowid), false);
    return { seq: value, durable };
  }

  remove(seq: number): Promise<void> {
    return this.#db.writeStatement(() => {
      this.#delete.run(seq);
    });
  }

  setAttempts(seq: number, attempts: number): Promise<void> {
    return this.#db.writeStatement(() => {
      this.#setAttempts.run(attempts, seq);
    });
  }

  async deadLetter(entry: JournalEntry, reason: string, deadAt: number): Promise<void> {
    await this.#db.write(() => {
      this.#insertDead.run(entry.seq, ...columnsOf(entry.record), entry.attempts, reason, deadAt);
      this.#delete.run(entry.seq);
    });
    this.#deadCount++;
  }

  deadLetterCount(): number {
    return this.#deadCount;
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    const rows = this.#db
      .statement<[number], DeadRow>(`SELECT seq, ${COLUMNS}, attempts, reason, dead_at FROM bus_dead_letters ORDER BY dead_at DESC, seq DESC LIMIT ?`)
      .all(limit);
    return rows.map((row) => ({ id: String(row.seq), record: recordOf(row), attempts: row.attempts, reason: row.reason, deadAt: row.dead_at }));
  }

  /** One transaction: each named dead letter becomes a new record row (attempts 0) and leaves the dead letters. */
  async revive(ids: readonly string[], enqueuedAt: number): Promise<JournalEntry[]> {
    const select = this.#db.statement<[number], DeadRow>(`SELECT seq, ${COLUMNS}, attempts, reason, dead_at FROM bus_dead_letters WHERE seq = ?`);
    const remove = this.#db.statement<[number]>("DELETE FROM bus_dead_letters WHERE seq = ?");
    const revived = await this.#db.write(() => {
      const out: JournalEntry[] = [];
      for (const id of new Set(ids)) {
        const seq = Number(id);
        const row = Number.isSafeInteger(seq) ? select.get(seq) : undefined;
        if (row === undefined) continue;
        const record = recordOf(row);
        const newSeq = Number(this.#insert.run(...columnsOf(record), enqueuedAt).lastInsertRowid);
        remove.run(seq);
        out.push({ seq: newSeq, record, attempts: 0, enqueuedAt });
      }
      return out;
    });
    this.#deadCount -= revived.length;
    return revived;
  }

  async drop(ids: readonly string[]): Promise<number> {
    const remove = this.#db.statement<[number]>("DELETE FROM bus_dead_letters WHERE seq = ?");
    const dropped = await this.#db.write(() => {
      let n = 0;
      for (const id of new Set(ids)) {
        const seq = Number(id);
        if (Number.isSafeInteger(seq)) n += remove.run(seq).changes;
      }
      return n;
    });
    this.#deadCount -= dropped;
    return dropped;
  }

  ready(): boolean {
    return this.#db.open;
  }
}
