import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const DRIVER = createRequire(import.meta.url).resolve("better-sqlite3");

/** What one checkpoint pass found: WAL frames in all, and how many of them are in the database file now. */
export interface CheckpointPass {
  readonly walFrames: number;
  readonly checkpointed: number;
}

/** `close()` waits at most this long for the worker to close its connection (a pass in progress finishes first). */
const CLOSE_WAIT_MS = 5_000;
/** A finishing pass that has not answered in this long is given up (the writer must not wait on a lost worker). */
const FINISH_TIMEOUT_MS = 2_000;

/** Slot 0 of the shared flag: 0 while the worker's connection may be open, 1 once it is closed (or never opened). */
const CLOSED = 1;

/**
 * The worker's whole program (CommonJS, evaluated: no file to resolve under tsx or from dist/).
 * Its own connection runs a PASSIVE checkpoint every `everyMs`: it copies the WAL's committed
 * frames into the database file without waiting for or blocking the writer, syncing the WAL before
 * and the database file after (what `synchronous = NORMAL` does for a checkpoint). It never
 * creates the database (`fileMustExist`), and it tells the shared flag once its connection is closed.
 */
const PROGRAM = `
const { parentPort, workerData } = require("node:worker_threads");
const flag = new Int32Array(workerData.flag);
const closed = () => { Atomics.store(flag, 0, ${CLOSED}); Atomics.notify(flag, 0); };
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.file, { timeout: 1000, fileMustExist: true });
  db.pragma("synchronous = NORMAL");
  db.pragma("wal_autocheckpoint = 0");
} catch (err) {
  parentPort.postMessage({ kind: "failed", ok: false, error: String(err && err.message) });
  closed();
  throw err;
}
const pass = (kind, id) => {
  try {
    const [row] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ kind, id, ok: true, walFrames: row.log, checkpointed: row.checkpointed });
  } catch (err) {
    parentPort.postMessage({ kind, id, ok: false, error: String(err && err.message) });
  }
};
const timer = setInterval(() => pass("timed"), workerData.everyMs);
parentPort.on("message", (msg) => {
  if (msg.finish !== undefined) return pass("finish", msg.finish);
  if (msg.close !== true) return;
  clearInterval(timer);
  db.close();
  closed();
  parentPort.close();
});
`;

type PassMessage = { readonly kind: "timed" | "finish" | "failed"; readonly id?: number } & (
  { readonly ok: true; readonly walFrames: number; readonly checkpointed: number } | { readonly ok: false; readonly error: string }
);

export interface CheckpointerOptions {
  readonly everyMs: number;
  /** Each timed pass that ran. */
  readonly onPass?: (pass: CheckpointPass) => void;
  /** The worker stopped without being closed (it failed): checkpoints are the writer's again. */
  readonly onExit?: (error: Error) => void;
}

/**
 * WAL checkpoints on a worker thread, so the event loop never copies pages into the database file
 * nor waits for its fsync. Measured before (checkpoints run by COMMIT on the event loop, every 10,000
 * WAL pages; bench/results/README.md, "Issue 16, third round"): a commit that checkpointed held the
 * loop 40-70 ms, and the commits right after it 8-15 ms each. The writer's connection runs with
 * `wal_autocheckpoint = 0` while the worker lives (`onExit`: it takes them back).
 *
 * A timed pass copies what was committed so far while the writer goes on, so it usually ends a few
 * commits behind, and SQLite restarts the WAL at its beginning only when a write transaction begins
 * with all of it copied. `onPass` hears each timed pass; the writer then holds its commits for one
 * `finish()` pass over the few frames left (SqliteDb does), and its next commit restarts the WAL.
 * A failed pass (a lock held elsewhere) is only counted: the next one catches up.
 */
export class SqliteCheckpointer {
  readonly #worker: Worker;
  readonly #flag = new Int32Array(new SharedArrayBuffer(4));
  #passes = 0;
  #failures = 0;
  #finishes = 0;
  #largest = 0;
  #last: CheckpointPass = { walFrames: 0, checkpointed: 0 };
  #finishIds = 0;
  #finishing: { id: number; resolve: (pass: CheckpointPass) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;
  #exited = false;
  #closed = false;

  constructor(file: string, opts: CheckpointerOptions) {
    this.#worker = new Worker(PROGRAM, { eval: true, workerData: { driver: DRIVER, file, everyMs: opts.everyMs, flag: this.#flag.buffer } });
    let failure: Error | undefined;
    this.#worker.on("message", (msg: PassMessage) => {
      if (msg.kind === "failed") {
        failure = new Error(`checkpoint worker: ${msg.ok ? "failed" : msg.error}`);
        return;
      }
      if (msg.ok) {
        this.#passes++;
        this.#last = { walFrames: msg.walFrames, checkpointed: msg.checkpointed };
        this.#largest = Math.max(this.#largest, msg.walFrames);
      } else this.#failures++;
      if (msg.kind === "timed") {
        if (msg.ok) opts.onPass?.(this.#last);
      } else if (msg.id === this.#finishing?.id) {
        if (msg.ok) this.#finishes++;
        this.#settleFinish(msg.ok ? undefined : new Error(msg.error));
      }
    });
    this.#worker.on("error", (err: unknown) => {
      this.#failures++;
      failure ??= err instanceof Error ? err : new Error("checkpoint worker: failed");
    });
    this.#worker.on("exit", () => {
      this.#exited = true;
      this.#settleFinish(new Error("the checkpoint worker exited"));
      if (!this.#closed) opts.onExit?.(failure ?? new Error("the checkpoint worker exited"));
    });
    this.#worker.unref();
  }

  /** Timed and finishing passes that ran, those that failed, and finishing passes that ran. */
  get passes(): number {
    return this.#passes;
  }

  get failures(): number {
    return this.#failures;
  }

  get finishes(): number {
    return this.#finishes;
  }

  /** What the latest pass found, and the most WAL frames any pass found. */
  get last(): CheckpointPass {
    return this.#last;
  }

  get largestWal(): number {
    return this.#largest;
  }

  /** One pass now (after any in progress); resolves with what it found, rejects if it failed or did not answer. */
  finish(): Promise<CheckpointPass> {
    if (this.#finishing !== undefined) return Promise.reject(new Error("a finishing pass is already running"));
    if (this.#exited || this.#closed) return Promise.reject(new Error("the checkpoint worker is closed"));
    const id = ++this.#finishIds;
    return new Promise<CheckpointPass>((resolve, reject) => {
      const timer = setTimeout(() => this.#settleFinish(new Error("the finishing checkpoint did not answer")), FINISH_TIMEOUT_MS);
      timer.unref();
      this.#finishing = { id, resolve, reject, timer };
      this.#worker.postMessage({ finish: id });
    });
  }

  #settleFinish(error: Error | undefined): void {
    const finishing = this.#finishing;
    if (finishing === undefined) return;
    this.#finishing = undefined;
    clearTimeout(finishing.timer);
    if (error === undefined) finishing.resolve(this.#last);
    else finishing.reject(error);
  }

  /**
   * Stops the passes and returns once the worker's connection is closed (blocking the caller until
   * then, at most CLOSE_WAIT_MS: a pass in progress finishes first), so whoever closes the database
   * after it is its last connection and nothing touches the files afterwards. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#settleFinish(new Error("the checkpoint worker is closed"));
    if (this.#exited) return;
    this.#worker.postMessage({ close: true });
    Atomics.wait(this.#flag, 0, 0, CLOSE_WAIT_MS);
  }
}
