import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { RoutingError } from "../core/errors.ts";

export type SqliteSync = "full" | "normal";

export interface SqliteDbOptions {
  /** The database is `<dataDir>/routing.db`; the directory is created if missing. */
  readonly dataDir: string;
  /**
   * `full` survives power loss: no write resolves before its transaction's WAL frames are on disk.
   * `normal` (in WAL mode) survives process crashes only.
   */
  readonly sync: SqliteSync;
  /** How long a statement waits for a lock held by another connection, in ms. */
  readonly busyTimeoutMs?: number;
}

/**
 * Schema versions in order; `PRAGMA user_version` records how many have been applied.
 * Append only: an applied migration is never edited.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE bus_records (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    is_ephemeral INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    envelope     TEXT    NOT NULL,
    accepted_at  INTEGER NOT NULL,
    path         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    enqueued_at  INTEGER NOT NULL
  );
  CREATE TABLE bus_dead_letters (
    seq          INTEGER PRIMARY KEY,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    is_ephemeral INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    envelope     TEXT    NOT NULL,
    accepted_at  INTEGER NOT NULL,
    path         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    dead_at      INTEGER NOT NULL
  );
  CREATE INDEX bus_dead_letters_dead_at ON bus_dead_letters (dead_at);

  CREATE TABLE mailbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    high         INTEGER GENERATED ALWAYS AS (priority >= 5) VIRTUAL,
    envelope     TEXT    NOT NULL,
    queued_at    INTEGER NOT NULL,
    UNIQUE (recipient_id, message_id)
  );
  CREATE INDEX mailbox_fetch ON mailbox (recipient_id, high DESC, seq);
  CREATE TABLE mailbox_dedup (
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (recipient_id, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX mailbox_dedup_expires_at ON mailbox_dedup (expires_at);

  CREATE TABLE device_tokens (
    token         TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    platform      TEXT    NOT NULL,
    registered_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX device_tokens_owner ON device_tokens (owner);

  CREATE TABLE push_queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    due_at       INTEGER NOT NULL
  );
  `,
  // 2: push dead letters (issue 6).
  `
  CREATE TABLE push_dead_letters (
    seq          INTEGER PRIMARY KEY,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    dead_at      INTEGER NOT NULL
  );
  CREATE INDEX push_dead_letters_dead_at ON push_dead_letters (dead_at);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Opens (creating and migrating as needed) `<dataDir>/routing.db`. */
export function openSqliteDb(opts: SqliteDbOptions): SqliteDb {
  return new SqliteDb(opts);
}

/**
 * Runs one role operation: a closed role or any SQLite failure becomes BACKEND_UNAVAILABLE, with
 * the failure as `cause` and a message that names the operation only (never payload bytes).
 */
export async function guarded<T>(what: string, isOpen: boolean, op: () => T | Promise<T>): Promise<T> {
  if (!isOpen) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
  try {
    return await op();
  } catch (err) {
    if (err instanceof RoutingError) throw err;
    throw new RoutingError("BACKEND_UNAVAILABLE", `${what} failed`, { cause: err });
  }
}

function migrate(db: Database.Database): void {
  const current = Number(db.pragma("user_version", { simple: true }));
  if (current > MIGRATIONS.length) {
    throw new Error(`routing.db has schema version ${current}, newer than this build's ${MIGRATIONS.length}`);
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    const apply = db.transaction(() => {
      db.exec(MIGRATIONS[version]);
      db.pragma(`user_version = ${version + 1}`);
    });
    apply.immediate();
  }
}

type Settle = () => void;

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
 * queued since the last commit commits in a single transaction, each multi-statement write in its
 * own savepoint so a failing one rolls back alone. Reads are synchronous cached statements; in WAL
 * mode they never wait for the writer.
 *
 * Durability (`sync: "full"`): the connection runs `synchronous = NORMAL` (commits write the WAL
 * without fsync; checkpoints still fsync the WAL before copying and the database before the WAL
 * is reused) and this class makes each commit durable itself: after COMMIT it fdatasyncs the WAL
 * file on libuv's thread pool and resolves the group's writes only when that returns. That is what
 * `synchronous = FULL` guarantees (a resolved write survives power loss) without blocking the
 * event loop for the fsync. While an fdatasync is in flight nothing commits: writes queue and
 * commit as one group when it returns, so at any load there is one commit and one fdatasync per
 * disk round trip (group commit across turns). A failed fdatasync rejects the groups it covered.
 * Committed data is visible to reads before its fsync returns: a reader may see a write whose
 * writer has not yet been told it is durable (at-least-once, as after any redelivery).
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
  #syncs = 0;
  #durable: boolean;
  #walFd: number | undefined;
  /** Groups committed and waiting for the next fdatasync. */
  #unsynced: Array<{ settle: Settle; fail: (error: unknown) => void }> = [];
  #syncing = false;

  constructor(opts: SqliteDbOptions) {
    this.#durable = opts.sync === "full";
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.file = path.join(opts.dataDir, "routing.db");
    this.#db = new Database(this.file, { timeout: opts.busyTimeoutMs ?? 5_000 });
    try {
      this.#db.pragma("journal_mode = WAL");
      // `full` is NORMAL plus this class' own fdatasync of the WAL per group (see above).
      this.#db.pragma("synchronous = NORMAL");
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

  /** WAL fdatasyncs completed so far (`sync: "full"` only; each covers one or more commits). */
  get syncs(): number {
    return this.#syncs;
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
   * holding it committed (and, with `sync: "full"`, is on disk); rejects if `fn` threw (its changes
   * alone are rolled back) or if the commit failed (nothing of the group was written). `fn` must be
   * synchronous.
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
      this.#schedule();
    });
  }

  /**
   * The next group commits on the next turn, or, with `sync: "full"`, once the fdatasync in flight
   * returns: groups then grow with the load instead of each turn paying for its own commit.
   */
  #schedule(): void {
    if (this.#scheduled || this.#syncing || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  /**
   * Commits queued writes, then closes. Idempotent. Closing checkpoints the WAL into the database
   * with fsyncs, so groups still waiting for their fdatasync are durable once it returns.
   */
  close(): void {
    if (!this.#db.open) return;
    this.#flush();
    this.#statements.clear();
    this.#db.close();
    if (!this.#syncing) this.#closeWal();
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
    const settle = () =>
      batch.forEach((w, i) => {
        const outcome = outcomes[i];
        if (outcome.ok) w.resolve(outcome.value);
        else w.reject(outcome.error);
      });
    if (!this.#durable) return settle();
    this.#unsynced.push({ settle, fail: (error) => batch.forEach((w) => w.reject(error)) });
    this.#syncWal();
  }

  /** Starts one fdatasync of the WAL for every group committed so far, unless one is running. */
  #syncWal(): void {
    if (this.#syncing || this.#unsynced.length === 0) return;
    const groups = this.#unsynced;
    this.#unsynced = [];
    this.#syncing = true;
    let fd: number;
    try {
      // Opened on first use: the WAL exists once something was written; it is never replaced
      // while the connection is open (only reused from its start after a checkpoint).
      fd = this.#walFd ??= fs.openSync(`${this.file}-wal`, "r");
    } catch (error) {
      this.#syncing = false;
      for (const g of groups) g.fail(error);
      return;
    }
    fs.fdatasync(fd, (error) => {
      this.#syncing = false;
      if (error) {
        for (const g of groups) g.fail(error);
      } else {
        this.#syncs++;
        for (const g of groups) g.settle();
      }
      if (!this.#db.open && this.#unsynced.length === 0) this.#closeWal();
      else this.#syncWal();
      if (this.#db.open) this.#schedule();
    });
  }

  #closeWal(): void {
    if (this.#walFd === undefined) return;
    fs.closeSync(this.#walFd);
    this.#walFd = undefined;
  }
}
