import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";

/**
 * One process per data dir. Two nodes writing the same `ROUTING_DATA_DIR` would each think they own
 * its bus, mailbox and push queue, so the second one must refuse to start.
 *
 * The lock is SQLite's own: `<dataDir>/routing.lock` is opened with `locking_mode=EXCLUSIVE` and
 * written once, so this connection holds the file's exclusive lock (an fcntl lock) until it closes.
 * The kernel drops the lock when the process dies, `kill -9` included, so a crashed node never leaves
 * a stale lock behind: the next start simply takes it over. (The lock file is never deleted: unlinking
 * a lock file while another process opens it would let two processes lock two different inodes.)
 *
 * `<dataDir>/node.json` says who holds it: the pid, the instance id and what a local tool needs to
 * reach the node (the REPL's socket). It is written after the lock is taken and removed on release;
 * one left behind by a crash names a dead pid and is overwritten by the next holder.
 */

export interface NodeFile {
  readonly pid: number;
  readonly instanceId: string;
  readonly startedAt: string;
  /** Unix socket of the node's local transporter (`npm run repl` attaches through it), once listening. */
  readonly replSocket?: string;
}

export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number | undefined,
  ) {
    super(
      pid === undefined
        ? `data dir ${dataDir} is in use by another process; stop it or set another ROUTING_DATA_DIR`
        : `data dir ${dataDir} is in use by process ${pid}; stop it or set another ROUTING_DATA_DIR`,
    );
    this.name = "DataDirInUseError";
  }
}

export interface DataDirLock {
  readonly dataDir: string;
  /** Rewrites node.json with more about this node (e.g. the REPL socket once it listens). */
  update(extra: Partial<Omit<NodeFile, "pid">>): void;
  /** Removes node.json and lets the lock go. Idempotent. */
  release(): void;
}

const LOCK_FILE = "routing.lock";
export const NODE_FILE = "node.json";

/** What node.json says, or undefined when there is none (or it is unreadable). */
export function readNodeFile(dataDir: string): NodeFile | undefined {
  try {
    const value = JSON.parse(readFileSync(join(dataDir, NODE_FILE), "utf8")) as Partial<NodeFile>;
    return typeof value.pid === "number" && typeof value.instanceId === "string" ? (value as NodeFile) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function writeNodeFile(dataDir: string, file: NodeFile): void {
  const path = join(dataDir, NODE_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(file) + "\n", { mode: 0o600 });
  renameSync(tmp, path);
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
}

/** The holder's pid as node.json names it; it may lag the lock by a moment, so wait a little for a live one. */
async function holderPid(dataDir: string): Promise<number | undefined> {
  for (let tries = 0; tries < 20; tries++) {
    const file = readNodeFile(dataDir);
    if (file && processAlive(file.pid)) return file.pid;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/**
 * Takes the data dir for this process (creating it if needed), or rejects with DataDirInUseError
 * naming the pid of the process holding it.
 */
export async function lockDataDir(dataDir: string, instanceId: string): Promise<DataDirLock> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    db.pragma("journal_mode = MEMORY");
    // The first write takes the exclusive lock; EXCLUSIVE locking mode keeps it until close.
    db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)");
    db.transaction(() => {
      db.exec("DELETE FROM holder");
      db.prepare("INSERT INTO holder (pid) VALUES (?)").run(process.pid);
    })();
  } catch (err) {
    db.close();
    if (isBusy(err)) throw new DataDirInUseError(dir, await holderPid(dir));
    throw err;
  }
  let file: NodeFile = { pid: process.pid, instanceId, startedAt: new Date().toISOString() };
  writeNodeFile(dir, file);
  let released = false;
  return {
    dataDir: dir,
    update(extra) {
      if (released) return;
      file = { ...file, ...extra, pid: process.pid };
      writeNodeFile(dir, file);
    },
    release() {
      if (released) return;
      released = true;
      if (readNodeFile(dir)?.pid === process.pid) rmSync(join(dir, NODE_FILE), { force: true });
      db.close();
    },
  };
}
