import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const DRIVER = createRequire(import.meta.url).resolve("better-sqlite3");

/** What one checkpoint pass found: WAL frames in all, and how many of them are in the database file now. */
export interface CheckpointPass {
  readonly walFrames: number;
  readonly checkpointed: number;
}

/**
 * The worker's whole program (CommonJS, evaluated: no file to resolve under tsx or from dist/).
 * Its own connection runs a PASSIVE checkpoint every `everyMs`: it copies the WAL's committed
 * frames into the database file without waiting for or blocking the writer, syncing the WAL before
 * and the database file after (what `synchronous = NORMAL` does for a checkpoint).
 */
const PROGRAM = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file, { timeout: 1000 });
db.pragma("synchronous = NORMAL");
db.pragma("wal_autocheckpoint = 0");
const pass = (kind) => {
  try {
    const [row] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ kind, ok: true, walFrames: row.log, checkpointed: row.checkpointed });
  } catch (err) {
    parentPort.postMessage({ kind, ok: false, error: String(err && err.message) });
  }
};
const timer = setInterval(() => pass("timed"), workerData.everyMs);
parentPort.on("message", (msg) => {
  if (msg === "finish") return pass("finish");
  if (msg !== "close") return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

type PassMessage =
  | { readonly kind: "timed" | "finish"; readonly ok: true; readonly walFrames: number; readonly checkpointed: number }
  | { readonly kind: "timed" | "finish"; readonly ok: false; readonly error: string };

/** A finishing pass that has not answered in this long is given up (the writer must not wait on a lost worker). */
const FINISH_TIMEOUT_MS = 2_000;

/**
 * WAL checkpoints on a worker thread, so the event loop never copies pages into the database file
 * nor waits for its fsync. Measured before (checkpoints run by COMMIT on the event loop, every 10,000
 * WAL pages): a commit that checkpointed held the loop 40-70 ms, and the commits right after it
 * 8-15 ms each, which made the p99 at 5k msg/s (README, "Performance"). The writer's connection must
 * run with `wal_autocheckpoint = 0`.
 *
 * A timed pass copies what was committed so far while the writer goes on, so it always ends a few
 * commits behind, and SQLite restarts the WAL at its beginning only when a write transaction begins
 * with all of it copied. `onPass` hears each timed pass; the writer then holds its commits for one
 * `finish()` pass over the few frames left (SqliteDb does), and its next commit restarts the WAL.
 * A failed pass (a lock held elsewhere) is only counted: the next one catches up.
 */
export class SqliteCheckpointer {
  readonly #worker: Worker;
  #passes = 0;
  #failures = 0;
  #last: CheckpointPass = { walFrames: 0, checkpointed: 0 };
  #finishing: { resolve: (pass: CheckpointPass) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;
  #exited = false;
  #closed: Promise<void> | undefined;

  constructor(file: string, everyMs: number, onPass: (pass: CheckpointPass) => void = () => {}) {
    this.#worker = new Worker(PROGRAM, { eval: true, workerData: { driver: DRIVER, file, everyMs } });
    this.#worker.on("message", (msg: PassMessage) => {
      if (msg.ok) {
        this.#passes++;
        this.#last = { walFrames: msg.walFrames, checkpointed: msg.checkpointed };
      } else this.#failures++;
      if (msg.kind === "finish") this.#settleFinish(msg.ok ? undefined : new Error(msg.error));
      else if (msg.ok) onPass(this.#last);
    });
    this.#worker.on("error", () => this.#failures++);
    this.#worker.on("exit", () => {
      this.#exited = true;
      this.#settleFinish(new Error("the checkpoint worker exited"));
    });
    this.#worker.unref();
  }

  /** Passes that ran, and those that failed. */
  get passes(): number {
    return this.#passes;
  }

  get failures(): number {
    return this.#failures;
  }

  /** What the latest pass found. */
  get last(): CheckpointPass {
    return this.#last;
  }

  /** One pass now (after any in progress); resolves with what it found, rejects if it failed or did not answer. */
  finish(): Promise<CheckpointPass> {
    if (this.#finishing !== undefined) return Promise.reject(new Error("a finishing pass is already running"));
    if (this.#exited || this.#closed !== undefined) return Promise.reject(new Error("the checkpoint worker is closed"));
    return new Promise<CheckpointPass>((resolve, reject) => {
      const timer = setTimeout(() => this.#settleFinish(new Error("the finishing checkpoint did not answer")), FINISH_TIMEOUT_MS);
      this.#finishing = { resolve, reject, timer };
      this.#worker.postMessage("finish");
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

  /** Stops the passes and closes the worker's connection; resolves once the thread exited. */
  close(): Promise<void> {
    this.#closed ??= this.#exited
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          this.#worker.once("exit", () => resolve());
          this.#worker.postMessage("close");
        });
    return this.#closed;
  }
}
