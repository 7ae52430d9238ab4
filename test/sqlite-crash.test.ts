import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { BusRecord } from "../backends/ingress-bus.ts";
import { openSqliteDb, type SqliteDb, type SqliteSync } from "../backends/sqlite-db.ts";
import { createSqliteIngressBus } from "../backends/sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "../backends/sqlite-mailbox.ts";
import { waitFor } from "./contracts/fixture.ts";
import { CRASH_RECIPIENT, crashEntry, crashRecord } from "./fixtures/sqlite-crash-child.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHILD = path.join(ROOT, "test", "fixtures", "sqlite-crash-child.ts");
/** tsx's `--import` entry, resolved from this repository rather than the child's cwd. */
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const COUNT = 500;
const KILL_AFTER = 200;

interface ChildRun {
  readonly bus: Set<string>;
  readonly mailbox: Set<string>;
  readonly signal: NodeJS.Signals | null;
  readonly finished: boolean;
  readonly stderr: string;
}

/** Runs the child and kills it with SIGKILL once KILL_AFTER publishes were acknowledged. */
async function runAndKill(dataDir: string, sync: SqliteSync): Promise<ChildRun> {
  const child = spawn(process.execPath, ["--import", TSX_LOADER, CHILD, dataDir, sync, String(COUNT)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const bus = new Set<string>();
  const mailbox = new Set<string>();
  let finished = false;
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
  const lines = readline.createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    const [kind, id] = line.split(" ");
    if (kind === "bus") bus.add(id);
    else if (kind === "mailbox") mailbox.add(id);
    else if (kind === "done") finished = true;
    if ((bus.size >= KILL_AFTER || finished) && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const closed = new Promise<void>((resolve) => lines.on("close", resolve));
  const timeout = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const signal = await exited;
  await closed;
  clearTimeout(timeout);
  return { bus, mailbox, signal, finished, stderr };
}

function indexOf(messageId: string): number {
  return Number(messageId.slice("crash-".length));
}

describe.each<SqliteSync>(["full", "normal"])("SQLite bus and mailbox survive kill -9 (sync=%s)", (sync) => {
  let dir: string | undefined;
  let db: SqliteDb | undefined;
  afterEach(() => {
    db?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("keeps every acknowledged publish and store", async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "routing-test-"));
    const run = await runAndKill(dir, sync);
    expect(run.stderr).toBe("");
    expect(run.signal).toBe("SIGKILL");
    expect(run.bus.size).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(run.mailbox.size).toBeGreaterThan(0);

    db = openSqliteDb({ dataDir: dir, sync });
    const bus = createSqliteIngressBus(db, { maxAttempts: 5, retryBaseMs: 100 });
    const backlog = (await bus.stats()).backlog;
    expect(backlog).toBeGreaterThanOrEqual(run.bus.size);
    expect(backlog).toBeLessThanOrEqual(COUNT);

    const delivered: BusRecord[] = [];
    bus.consume((d) => {
      delivered.push(d.record);
      void d.ack();
    });
    await waitFor(() => delivered.length >= backlog, `${backlog} recovered records`);
    const deliveredIds = new Set(delivered.map((r) => r.messageId));
    expect(deliveredIds.size).toBe(delivered.length);
    for (const id of run.bus) expect(deliveredIds.has(id), `acknowledged ${id} recovered`).toBe(true);
    // Committed but unacknowledged records may be there too; whatever is there is intact.
    for (const record of delivered) expect(record).toEqual(crashRecord(indexOf(record.messageId)));
    await waitFor(async () => (await bus.stats()).backlog === 0, "recovered records acked");

    // The entries carry a fixed 2023 queuedAt: no retention here (retention is tested in mailbox-lifecycle.contract.ts).
    const mailbox = createSqliteMailbox(db, { dedupTtlMs: 3_600_000, retentionMs: Number.MAX_SAFE_INTEGER });
    const stored = await mailbox.fetch(CRASH_RECIPIENT, COUNT);
    const storedIds = new Set(stored.map((e) => e.messageId));
    for (const id of run.mailbox) expect(storedIds.has(id), `acknowledged mailbox ${id} recovered`).toBe(true);
    for (const entry of stored) expect(entry).toEqual(crashEntry(indexOf(entry.messageId)));
    // The de-duplication record committed with each message.
    for (const id of run.mailbox) expect(await mailbox.store(crashEntry(indexOf(id)))).toBe("duplicate");
    await bus.close();
    await mailbox.close();
  });
});
