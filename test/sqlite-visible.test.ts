/**
 * The embedded store's two steps of a write, committed (visible, safe from a process crash) and
 * durable (its WAL sync returned), and what routing does with them: a record is routed and a stored
 * message signalled once committed, while the publisher's answer and the bus ack wait for durability.
 * WAL syncs are held by the test (an injected fdatasync) to see each step apart; checkpoints run on
 * their worker thread and restart the WAL.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Delivery } from "../backends/ingress-bus.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../backends/memory-push-queue.ts";
import { SqliteCheckpointer } from "../backends/sqlite-checkpointer.ts";
import { openSqliteDb, RESTART_AT_FRAMES, type SqliteDb } from "../backends/sqlite-db.ts";
import { createSqliteIngressBus } from "../backends/sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "../backends/sqlite-mailbox.ts";
import type { Urn } from "../core/urn.ts";
import { createRouter } from "../routing/router.ts";
import type { Signal } from "../routing/signals.ts";
import { waitFor } from "./contracts/fixture.ts";
import { busRecord } from "./contracts/ingress-bus.contract.ts";

const RECIPIENT = "urn:sm:user:visible" as Urn;

let dir: string;
/** Held WAL syncs, released in order by the test. */
let held: Array<() => void>;
let db: SqliteDb;

function openHeld(): SqliteDb {
  return openSqliteDb({
    dataDir: dir,
    sync: "full",
    syncSpacingMs: 0,
    dataSync: (fd, done) => held.push(() => fs.fdatasync(fd, done)),
  });
}

/** Releases the held syncs until `done()` holds (each release may start the next sync). */
async function releaseUntil(done: () => boolean, what: string): Promise<void> {
  await waitFor(() => {
    held.shift()?.();
    return done();
  }, what);
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "routing-visible-"));
  held = [];
});

afterEach(() => {
  for (const release of held.splice(0)) release();
  db?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("SqliteDb: visible and durable", () => {
  it("answers a visible write at COMMIT and its durability after the sync; a plain write only after the sync", async () => {
    db = openHeld();
    db.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
    const insert = db.statement<[string]>("INSERT INTO t (k) VALUES (?)");
    const events: string[] = [];
    const plain = db.writeStatement(() => insert.run("plain")).then(() => events.push("plain answered"));
    const visible = await db.writeVisible(() => insert.run("visible").changes);
    events.push("visible answered");
    expect(visible.value).toBe(1);
    // Committed in the same group, readable, with the group's sync still held.
    expect(db.statement("SELECT count(*) FROM t").pluck().get()).toBe(2);
    expect(held.length).toBe(1);
    const durable = visible.durable.then(() => events.push("visible durable"));
    held.shift()?.();
    await Promise.all([plain, durable]);
    expect(events[0]).toBe("visible answered");
    expect(events.slice(1).sort()).toEqual(["plain answered", "visible durable"]);
  });

  it("commits a visible write while a sync runs; a plain write queued alone waits for it; neither is answered by a sync that began before its commit", async () => {
    db = openHeld();
    db.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
    const insert = db.statement<[string]>("INSERT INTO t (k) VALUES (?)");
    const count = () => db.statement("SELECT count(*) FROM t").pluck().get();
    const first = db.writeStatement(() => insert.run("a"));
    await waitFor(() => held.length === 1, "the first sync started");
    expect(db.commits).toBe(1);
    // A visible write does not wait for the sync in flight: it commits at once.
    const visible = await db.writeVisible(() => insert.run("b"));
    expect(db.commits).toBe(2);
    let visibleDurable = false;
    void visible.durable.then(() => (visibleDurable = true));
    // A plain write queued alone during the sync stays uncommitted until the sync returns: its
    // group's turn (a setImmediate) passes without a commit.
    let plainAnswered = false;
    const plain = db.writeStatement(() => insert.run("c")).then(() => (plainAnswered = true));
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(count()).toBe(2);
    expect(db.commits).toBe(2);
    // The first sync returns: it answers "a" only ("b" committed after it began).
    held.shift()?.();
    await first;
    expect(visibleDurable).toBe(false);
    // "c" now commits and shares the next sync with "b".
    await waitFor(() => held.length === 1, "the second sync started");
    expect(count()).toBe(3);
    expect(plainAnswered).toBe(false);
    held.shift()?.();
    await Promise.all([visible.durable, plain]);
    expect(db.syncs).toBe(2);
  });

  it("rejects a visible write's durability when its sync fails; the value was already answered", async () => {
    db = openSqliteDb({
      dataDir: dir,
      sync: "full",
      syncSpacingMs: 0,
      dataSync: (_fd, done) => done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })),
    });
    db.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
    const visible = await db.writeVisible(() => db.statement<[string]>("INSERT INTO t (k) VALUES (?)").run("a").changes);
    expect(visible.value).toBe(1);
    await expect(visible.durable).rejects.toThrow("EIO");
  });
});

describe("embedded bus and router on visible writes", () => {
  it("routes a published record once committed and answers the publisher once it is durable", async () => {
    db = openHeld();
    const bus = createSqliteIngressBus(db, { maxAttempts: 3, retryBaseMs: 10 });
    const delivered: Delivery[] = [];
    const sub = bus.consume((d) => delivered.push(d));
    let answered = false;
    const publish = bus.publish(busRecord(1)).then(() => (answered = true));
    await waitFor(() => delivered.length === 1, "the record reached the consumer");
    // Delivered while the publish's sync is still held: the publisher has no answer yet.
    expect(answered).toBe(false);
    expect(held.length).toBe(1);
    await releaseUntil(() => answered, "the publish answered");
    await publish;
    await sub.close();
    await bus.close();
  });

  it("signals a stored message once visible and resolves the route (the bus ack) only once the store is durable", async () => {
    db = openHeld();
    const mailbox = createSqliteMailbox(db, { dedupTtlMs: 60_000 });
    const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
    await presence.add(RECIPIENT, { sessionId: "s1", instanceId: "i1", protocol: "ws", connectedAt: Date.now() });
    const signalled: Signal[] = [];
    const route = createRouter({
      mailbox,
      presence,
      pushQueue: createMemoryPushQueue(),
      signals: {
        signal: async (_urn, signal) => {
          signalled.push(signal);
          return 1;
        },
        close: async () => {},
      },
    });
    let outcome: string | undefined;
    const routing = route(busRecord(1, { recipientId: RECIPIENT, isEphemeral: false })).then((o) => (outcome = o));
    await waitFor(() => signalled.length === 1, "the recipient was signalled");
    // Fetchable by the recipient it was signalled to, before the sync returned; the route is not done.
    expect((await mailbox.fetch(RECIPIENT, 10)).map((e) => e.messageId)).toEqual(["msg-1"]);
    expect(held.length).toBe(1);
    expect(outcome).toBeUndefined();
    await releaseUntil(() => outcome !== undefined, "the route resolved");
    await routing;
    expect(outcome).toBe("delivered_online");
    await mailbox.close();
  });
});

describe("checkpoints on the worker thread", () => {
  it("copies the WAL into the database off the event loop and restarts it, so it does not grow", async () => {
    db = openSqliteDb({ dataDir: dir, sync: "normal", checkpointEveryMs: 50 });
    db.statement("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)").run();
    expect(db.statement("PRAGMA wal_autocheckpoint").pluck().get()).toBe(0);
    const insert = db.statement<[number, string]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const page = "x".repeat(3_000);
    const checkpointer = db.checkpointer;
    if (checkpointer === undefined) throw new Error("no checkpoint worker");
    // Writes until a pass saw the WAL past RESTART_AT_FRAMES and the writer held for a finishing pass.
    let k = 0;
    await waitFor(async () => {
      for (let i = 0; i < 100; i++) await db.writeStatement(() => insert.run(k++, page));
      return checkpointer.largestWal >= RESTART_AT_FRAMES && checkpointer.finishes >= 1;
    }, "a finishing pass after the WAL grew past the restart mark");
    // Small writes from now on: a pass that finds few frames proves the WAL started again at its beginning.
    await waitFor(async () => {
      await db.writeStatement(() => insert.run(k++, "y"));
      return checkpointer.last.walFrames < RESTART_AT_FRAMES / 10;
    }, "the WAL restarted");
    expect(checkpointer.failures).toBe(0);
    expect(db.statement("SELECT count(*) FROM t").pluck().get()).toBe(k);
  });

  it("close() returns only once the worker's connection is closed: the data directory can go at once", () => {
    for (let round = 0; round < 20; round++) {
      const roundDir = path.join(dir, `round-${round}`);
      const opened = openSqliteDb({ dataDir: roundDir, sync: "full", checkpointEveryMs: 1 });
      opened.statement("CREATE TABLE t (k INTEGER PRIMARY KEY)").run();
      opened.close();
      // The last connection removed the WAL; nothing recreates a file afterwards.
      expect(fs.readdirSync(roundDir).sort()).toEqual(["routing.db"]);
      fs.rmSync(roundDir, { recursive: true });
      expect(fs.existsSync(roundDir)).toBe(false);
    }
  });

  it("a checkpoint worker that cannot open its database exits and says why, creating nothing", async () => {
    let exited: Error | undefined;
    const missing = path.join(dir, "missing.db");
    const orphan = new SqliteCheckpointer(missing, { everyMs: 50, onExit: (err) => (exited = err) });
    await waitFor(() => exited !== undefined, "the worker reported its exit");
    expect(exited?.message).toMatch(/does not exist|unable to open/i);
    expect(fs.existsSync(missing)).toBe(false);
    orphan.close();
  });
});
