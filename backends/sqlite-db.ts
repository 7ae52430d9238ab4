import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { migrate } from "./sqlite-migrations.ts";

export type SqliteSync = "full" | "normal";

export interface SqliteDbOptions {
  /** The database is `<dataDir>/routing.db`; the directory is created if missing. */
  readonly dataDir: string;
  /** `full` survives power loss; `normal` (in WAL mode) survives process crashes only. */
  readonly sync: SqliteSync;
  /** How long a statement waits for a lock held by another connection, in ms. */
  readonly busyTimeoutMs?: number;
}

/** Opens (creating and migrating as needed) `<dataDir>/routing.db`. */
export function openSqliteDb(opts: SqliteDbOptions): SqliteDb {
  return new SqliteDb(opts);
}

interface QueuedWrite {
  readonly fn: (db: Database.Database) => unknown;
  /** Wrap in a savepoint (several statements that must roll back together). */
  readonly savepoint: boolean;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/**
 * The one SQLite database every embedded role shares. Writes are group-committed: everything
 * queued during one event-loop turn commits in a single transaction (one fsync), each
 * multi-statement write in its own savepoint so a failing one rolls back alone (`writeStatement`
 * for a single statement needs none). Reads are synchronous cached statements; in WAL mode they
 * never wait for the writer.
 *
 * Roles never close it: whoever opened it closes it, after the roles.
 */
export class SqliteDb {
  readonly file: string;
  #db: Database.Database;
  #statements = new Map<string, Database.Statement<unknown[], unknown>>();
  #queue: QueuedWrite[] = [];
  #scheduled = false;
  #commits = 0;

  constructor(opts: SqliteDbOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.file = path.join(opts.dataDir, "routing.db");
    this.#db = new Database(this.file, { timeout: opts.busyTimeoutMs ?? 5_000 });
    try {
      this.#db.pragma("journal_mode = WAL");
      this.#db.pragma(`synchronous = ${opts.sync === "full" ? "FULL" : "NORMAL"}`);
      // Performance only, durability unchanged. Each write's savepoint keeps a statement journal;
      // past 64 KiB a group's journal spilled to a temp file, about six extra pwrite(2) calls per
      // message: keep it in memory. And checkpoint every 10000 WAL pages instead of 1000: the hot
      // pages (bus tail, per-recipient index leaves) are copied to the database once per
      // checkpoint, so fewer checkpoints copy far less (README, "Performance").
      this.#db.pragma("temp_store = MEMORY");
      this.#db.pragma("wal_autocheckpoint = 10000");
      migrate(this.#db);
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  get open(): boolean {
    return this.#db.open;
  }

  /** Transactions committed so far (each is one group of writes). */
  get commits(): number {
    return this.#commits;
  }

  /** A prepared statement, prepared once per SQL text. */
  statement<P extends unknown[] = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let stmt = this.#statements.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare<unknown[], unknown>(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt as unknown as Database.Statement<P, R>;
  }

  /**
   * Queues `fn` for the next group commit. Resolves with its result only after the transaction
   * holding it committed; rejects if `fn` threw (its changes alone are rolled back) or if the
   * commit failed (nothing of the group was written). `fn` must be synchronous.
   */
  write<T>(fn: (db: Database.Database) => T): Promise<T> {
    return this.#enqueue(fn, true);
  }

  /**
   * `write` for a `fn` that runs exactly ONE statement: SQLite already rolls back a failed
   * statement alone, so it needs no savepoint of its own (two fewer statements per write).
   */
  writeStatement<T>(fn: (db: Database.Database) => T): Promise<T> {
    return this.#enqueue(fn, false);
  }

  #enqueue<T>(fn: (db: Database.Database) => T, savepoint: boolean): Promise<T> {
    if (!this.#db.open) return Promise.reject(new Error("routing.db is closed"));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, savepoint, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Commits queued writes, then closes. Idempotent. */
  close(): void {
    if (!this.#db.open) return;
    this.#flush();
    this.#statements.clear();
    this.#db.close();
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    if (!this.#db.open) {
      for (const w of batch) w.reject(new Error("routing.db is closed"));
      return;
    }
    const outcomes: Outcome[] = [];
    try {
      this.statement("BEGIN IMMEDIATE").run();
      const savepoint = this.statement("SAVEPOINT w");
      const release = this.statement("RELEASE w");
      for (const w of batch) {
        if (w.savepoint) savepoint.run();
        try {
          const value = w.fn(this.#db);
          if (w.savepoint) release.run();
          outcomes.push({ ok: true, value });
        } catch (error) {
          // Some errors (I/O, disk full) abort the whole transaction: then nothing can commit.
          if (!this.#db.inTransaction) throw error;
          if (w.savepoint) {
            this.statement("ROLLBACK TO w").run();
            release.run();
          }
          outcomes.push({ ok: false, error });
        }
      }
      this.statement("COMMIT").run();
      this.#commits++;
    } catch (error) {
      try {
        if (this.#db.inTransaction) this.statement("ROLLBACK").run();
      } catch {
        // The connection is already unusable; every write of the group is rejected below.
      }
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) w.resolve(outcome.value);
      else w.reject(outcome.error);
    });
  }
}
