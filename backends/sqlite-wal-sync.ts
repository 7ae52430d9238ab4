import fs from "node:fs";
import path from "node:path";

/** fdatasync(2) as libuv runs it, on its thread pool; injectable for tests. */
export type DataSync = (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;

/**
 * Power-loss durability for a WAL database whose connection commits with `synchronous=NORMAL`
 * (COMMIT appends the transaction's frames to the WAL with write(2), no fsync): `after(done)` calls
 * `done` once everything committed before the call is on disk, by one fdatasync(2) of the WAL file
 * on libuv's thread pool, never on the event loop.
 *
 * One sync at a time: commits made while a sync is in flight wait for the next one, which then
 * covers all of them (SqliteDb goes further: it holds its durable-only writes while a sync runs and
 * commits them in one transaction when `onIdle` says it returned; visible writes commit at once). The WAL is append-only between checkpoints and a recovery keeps a prefix of it, so a
 * synced commit implies every earlier one; SQLite itself syncs the WAL before a checkpoint copies
 * it and the database file after (what `NORMAL` guarantees). A process crash (kill -9) loses
 * nothing committed either way: the frames are in the OS page cache.
 */
export class WalSync {
  readonly #file: string;
  readonly #dataSync: DataSync;
  #fd: number | undefined;
  #inFlight = false;
  #closed = false;
  /** Waiting for the next sync: committed after the one in flight began. */
  #next: Array<(err?: Error) => void> = [];

  #syncs = 0;
  readonly #onIdle: () => void;
  readonly #spacingMs: number;
  #lastStart = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  /**
   * `onIdle` runs each time a sync returned (the writer may commit what it held meanwhile).
   * `spacingMs`: the least time from one sync's start to the next's. Each fdatasync handed to the
   * thread pool costs CPU in wake-ups on top of the disk's own; at low rates, where a sync covers
   * one message's step, waiting lets the steps of several messages share it.
   */
  constructor(dbFile: string, dataSync: DataSync = fs.fdatasync, onIdle: () => void = () => {}, spacingMs = 0) {
    this.#file = `${dbFile}-wal`;
    this.#dataSync = dataSync;
    this.#onIdle = onIdle;
    this.#spacingMs = spacingMs;
  }

  /** A sync is running. */
  get busy(): boolean {
    return this.#inFlight;
  }

  /** fdatasync calls so far. */
  get syncs(): number {
    return this.#syncs;
  }

  /** Calls `done` (with an error if the sync failed) once every commit made so far is durable. */
  after(done: (err?: Error) => void): void {
    this.#next.push(done);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed || this.#inFlight || this.#timer !== undefined || this.#next.length === 0) return;
    const wait = this.#lastStart + this.#spacingMs - performance.now();
    if (wait <= 0) return this.#start();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, wait);
  }

  /** Syncs on the calling thread and settles every waiter (close: nothing may be left pending). */
  syncNow(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = this.#next;
    this.#next = [];
    let error: Error | undefined;
    try {
      fs.fdatasyncSync(this.#open());
    } catch (err) {
      error = err instanceof Error ? err : new Error(String(err));
    }
    for (const done of waiting) done(error);
  }

  /** Closes the WAL descriptor (after the sync in flight, if any, answered). */
  close(): void {
    this.#closed = true;
    if (!this.#inFlight) this.#closeFd();
  }

  #closeFd(): void {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }

  #start(): void {
    const batch = this.#next;
    this.#next = [];
    let fd: number;
    try {
      fd = this.#open();
    } catch (err) {
      for (const done of batch) done(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.#inFlight = true;
    this.#syncs++;
    this.#lastStart = performance.now();
    this.#dataSync(fd, (err) => {
      this.#inFlight = false;
      for (const done of batch) done(err ?? undefined);
      if (this.#closed) return this.#closeFd();
      this.#onIdle();
      // Commits made during this sync wait for the next one; starting it a turn later lets the
      // writes held meanwhile (onIdle) commit first and share it instead of waiting for one more.
      if (this.#next.length > 0) setImmediate(() => this.#schedule());
    });
  }

  /**
   * The WAL file, opened once (read-only: fsync flushes the file, whichever descriptor wrote it).
   * The first open also syncs the directory, so the WAL's own entry survives a power loss.
   */
  #open(): number {
    if (this.#fd === undefined) {
      this.#fd = fs.openSync(this.#file, "r");
      const dir = fs.openSync(path.dirname(this.#file), "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
    }
    return this.#fd;
  }
}
