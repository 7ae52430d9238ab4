import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { migrate } from "./sqlite-migrations.ts";
import { SqliteCheckpointer, type CheckpointPass } from "./sqlite-checkpointer.ts";
import { answerGroup, type Outcome, type QueuedWrite, type Visible } from "./sqlite-group.ts";
import { WalSync, type DataSync } from "./sqlite-wal-sync.ts";

export type SqliteSync = "full" | "normal";

/**
 * `full`: at most one WAL fdatasync per this many ms. Measured in process at 1k msg/s (README,
 * "Performance"): 1.1-1.5 syncs per message without a spacing, 0.4-0.45 with 2 ms, ~20% less CPU per
 * message. 4 ms since routing goes on at COMMIT (`writeVisible`: no delivery waits for a sync, only
 * the publisher's answer and the bus ack do): server CPU per message at 1k msg/s 660 vs 800 µs for
 * 2 ms (`npm run bench`, ws/push/200B), p50 end to end 3.4 vs 3.7 ms. It adds up to this much to a
 * durable write's answer when the previous sync was shorter.
 */
export const SYNC_SPACING_MS = 4;

/** How often the checkpoint worker copies the WAL into the database file (sqlite-checkpointer.ts). */
export const CHECKPOINT_EVERY_MS = 1_000;

/** WAL frames (pages) past which the writer waits for a finishing checkpoint pass, so the WAL restarts. */
export const RESTART_AT_FRAMES = 1_000;

export interface SqliteDbOptions {
  /** The database is `<dataDir>/routing.db`; the directory is created if missing. */
  readonly dataDir: string;
  /**
   * `full` survives power loss: a write resolves once its commit is on disk, by a group fdatasync
   * of the WAL off the event loop (sqlite-wal-sync.ts); `normal` survives process crashes only
   * (the commit is in the OS page cache when the write resolves).
   */
  readonly sync: SqliteSync;
  /** The fdatasync `full` runs (tests hold it to see writes wait for it). */
  readonly dataSync?: DataSync;
  /** `full`: the least time between the starts of two WAL syncs (WalSync). */
  readonly syncSpacingMs?: number;

  /**
   * Checkpoints run on a worker thread every this many ms (0: by COMMIT on the event loop, every
   * 10,000 WAL pages, SQLite's way).
   */
  readonly checkpointEveryMs?: number;

  /** How long a statement waits for a lock held by another connection, in ms. */
  readonly busyTimeoutMs?: number;
}

/** Opens (creating and migrating as needed) `<dataDir>/routing.db`. */
export function openSqliteDb(opts: SqliteDbOptions): SqliteDb {
  return new SqliteDb(opts);
}

/**
 * The one SQLite database every embedded role shares. Writes are group-committed: everything
 * queued during one event-loop turn commits in a single transaction, each
 * multi-statement write in its own savepoint so a failing one rolls back alone (`writeStatement`
 * for a single statement needs none). With `sync: "full"` a write resolves only once its commit is
 * on disk: the fdatasync runs on libuv's thread pool, one for every commit made while the previous
 * one ran (sqlite-wal-sync.ts), so the event loop never blocks on the disk. Reads are synchronous
 * cached statements; in WAL mode they never wait for the writer (and may see a commit whose sync
 * is still running: nothing answered depends on such a read before its own write resolved).
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
  #transaction = 0;
  #beforeCommit: Array<() => void> = [];
  #walSync: WalSync | undefined;
  #checkpointer: SqliteCheckpointer | undefined;
  /** Commits wait for the checkpoint worker's finishing pass (so the next one restarts the WAL). */
  #heldForCheckpoint = false;

  constructor(opts: SqliteDbOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.file = path.join(opts.dataDir, "routing.db");
    this.#db = new Database(this.file, { timeout: opts.busyTimeoutMs ?? 5_000 });
    try {
      this.#db.pragma("journal_mode = WAL");
      // Commits never fsync on the event loop: with `full`, WalSync makes them durable before
      // their writes resolve (one fdatasync of the WAL on the thread pool per group of commits).
      this.#db.pragma("synchronous = NORMAL");
      // Performance only, durability unchanged. Each write's savepoint keeps a statement journal;
      // past 64 KiB a group's journal spilled to a temp file, about six extra pwrite(2) calls per
      // message: keep it in memory. Checkpoints, when COMMIT runs them: every 10000 WAL pages
      // instead of 1000: the hot pages (bus tail, per-recipient index leaves) are copied to the
      // database once per checkpoint, so fewer checkpoints copy far less (README, "Performance").
      this.#db.pragma("temp_store = MEMORY");
      const checkpointEveryMs = opts.checkpointEveryMs ?? CHECKPOINT_EVERY_MS;
      this.#db.pragma(checkpointEveryMs > 0 ? "wal_autocheckpoint = 0" : "wal_autocheckpoint = 10000");
      migrate(this.#db);
      if (checkpointEveryMs > 0) {
        this.#checkpointer = new SqliteCheckpointer(this.file, {
          everyMs: checkpointEveryMs,
          onPass: (pass) => this.#afterCheckpoint(pass),
          // The worker failed: SQLite's own checkpoints (by COMMIT) take over, so the WAL stays bounded.
          onExit: () => {
            if (this.#db.open) this.#db.pragma("wal_autocheckpoint = 10000");
          },
        });
      }
      if (opts.sync === "full") {
        // Not at once: the writes the sync just answered go on to their next step (the router's
        // store after a publish, its bus ack after the store) in the microtasks after this callback;
        // committing in the next turn lets those join the next sync instead of needing one more.
        this.#walSync = new WalSync(this.file, opts.dataSync, () => this.#schedule(), opts.syncSpacingMs ?? SYNC_SPACING_MS);
      }
    } catch (err) {
      this.#checkpointer?.close();
      this.#db.close();
      throw err;
    }
  }

  get open(): boolean {
    return this.#db.open;
  }

  /** WAL fdatasync calls so far (`full`). */
  get syncs(): number {
    return this.#walSync?.syncs ?? 0;
  }

  /** The checkpoint worker, if checkpoints run on one. */
  get checkpointer(): SqliteCheckpointer | undefined {
    return this.#checkpointer;
  }

  /** Transactions committed so far (each is one group of writes). */
  get commits(): number {
    return this.#commits;
  }

  /** Which group transaction runs (or ran last): a new number for each, so a role can tell its writes' groups apart. */
  get transaction(): number {
    return this.#transaction;
  }

  /**
   * Runs `fn` in every group transaction after its writes, just before COMMIT (a role's bookkeeping
   * summed over the group, e.g. the mailbox's usage). If it throws, the whole group is rolled back.
   */
  beforeCommit(fn: () => void): void {
    this.#beforeCommit.push(fn);
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
    return this.#enqueue(fn, true, false);
  }

  /**
   * `write`, answered as soon as its transaction committed (every read of this database sees it, and
   * a process crash keeps it) with `durable`, which resolves once the commit survives a power loss
   * too. For a step whose effects are safe to repeat: its caller acts on the committed value at once
   * and makes anything that depends on durability (an answer to a client, a bus ack) wait for
   * `durable`. Commits are durable in order (one WAL), so a later durable write implies this one.
   */
  writeVisible<T>(fn: (db: Database.Database) => T, savepoint = true): Promise<Visible<T>> {
    return this.#enqueue(fn, savepoint, true) as unknown as Promise<Visible<T>>;
  }

  /**
   * `write` for a `fn` that runs exactly ONE statement: SQLite already rolls back a failed
   * statement alone, so it needs no savepoint of its own (two fewer statements per write).
   */
  writeStatement<T>(fn: (db: Database.Database) => T): Promise<T> {
    return this.#enqueue(fn, false, false);
  }

  #enqueue<T>(fn: (db: Database.Database) => T, savepoint: boolean, visible: boolean): Promise<T> {
    if (!this.#db.open) return Promise.reject(new Error("routing.db is closed"));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, savepoint, visible, resolve: resolve as (value: unknown) => void, reject });
      this.#schedule();
    });
  }

  /**
   * Closes the checkpoint worker's connection (it finishes a pass it is in), commits queued writes,
   * syncs, then closes: this connection is the last, so SQLite checkpoints the whole WAL and removes
   * it, and nothing touches the files once this returns. Idempotent.
   */
  close(): void {
    if (!this.#db.open) return;
    this.#checkpointer?.close();
    this.#commit();
    this.#walSync?.syncNow();
    this.#walSync?.close();
    this.#statements.clear();
    this.#db.close();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#heldForCheckpoint && this.#db.open) return;
    // While the WAL sync runs, writes wait and then commit together when it returns (onIdle): one
    // transaction per sync instead of one per event-loop turn, and no later in time, since a commit
    // made meanwhile would wait for the next sync anyway. Unless one is a visible write: its caller
    // goes on at COMMIT (the router delivers), so it commits now. Measured at 5k msg/s: p50 end to end
    // 14.5 -> 3.5 ms with visible writes, ~40% more commits per message at 1k msg/s (bench/results/README.md, "Issue 16, third round").
    if (this.#walSync?.busy && this.#db.open && !this.#queue.some((w) => w.visible)) return;
    this.#commit();
  }

  /**
   * A timed checkpoint pass ran while commits went on. Past RESTART_AT_FRAMES of WAL, writes wait
   * for one short pass over the frames it did not copy (off the event loop; 8-19 ms measured at 5k
   * msg/s, most of it the pass's two fsyncs), so the next commit finds the WAL all copied and
   * restarts it at its beginning instead of growing it.
   */
  #afterCheckpoint(pass: CheckpointPass): void {
    if (pass.walFrames < RESTART_AT_FRAMES || pass.checkpointed === pass.walFrames) return; // small, or all copied: the next commit restarts it
    if (this.#heldForCheckpoint || !this.#db.open || this.#checkpointer === undefined) return;
    this.#heldForCheckpoint = true;
    this.#checkpointer
      .finish()
      .catch(() => undefined) // the WAL restarts after a later pass; the writes go on either way
      .finally(() => {
        this.#heldForCheckpoint = false;
        if (this.#queue.length > 0) this.#schedule();
      });
  }

  #commit(): void {
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
      this.#transaction++;
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
      for (const fn of this.#beforeCommit) fn();
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
    answerGroup(batch, outcomes, this.#walSync);
  }
}
