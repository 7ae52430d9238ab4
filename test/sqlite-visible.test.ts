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

  it("commits a visible write while a sync runs; plain writes queued with nothing visible wait for it", async () => {
    db = openHeld();
    db.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
    const insert = db.statement<[string]>("INSERT INTO t (k) VALUES (?)");
    const first = db.writeStatement(() => insert.run("a"));
    await waitFor(() => held.length === 1, "the first sync started");
    expect(db.commits).toBe(1);
    // A visible write does not wait for the sync in flight: it commits (with anything queued).
    const visible = await db.writeVisible(() => insert.run("b"));
    expect(db.commits).toBe(2);
    // A plain write alone waits for the sync to return, then commits.
    const plain = db.writeStatement(() => insert.run("c"));
    const laterVisible = db.writeVisible(() => insert.run("d"));
    await laterVisible;
    expect(db.commits).toBe(3);
    await releaseUntil(() => held.length === 0 && db.syncs >= 2, "the syncs covering every commit returned");
    await Promise.all([first, visible.durable, plain]);
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
    const insert = db.statement<[number, string]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const page = "x".repeat(3_000);
    // More frames than RESTART_AT_FRAMES: the writer then holds for a finishing pass.
    for (let k = 0; k < RESTART_AT_FRAMES * 1.5; k++) await db.writeStatement(() => insert.run(k, page));
    const checkpointer = db.checkpointer;
    expect(checkpointer).toBeDefined();
    await waitFor(() => (checkpointer?.last.walFrames ?? 0) >= RESTART_AT_FRAMES, "a pass saw the WAL past the restart mark");
    const grown = checkpointer?.last.walFrames ?? 0;
    // The next commits start the WAL again at its beginning: a later pass finds far fewer frames.
    await waitFor(async () => {
      await db.writeStatement(() => insert.run(RESTART_AT_FRAMES * 2 + Math.floor(Math.random() * 1e6), "y"));
      return (checkpointer?.last.walFrames ?? grown) < grown / 10;
    }, "the WAL restarted");
    expect(checkpointer?.failures).toBe(0);
    expect(db.statement("PRAGMA wal_autocheckpoint").pluck().get()).toBe(0);
    expect(db.statement("SELECT count(*) FROM t").pluck().get()).toBeGreaterThan(RESTART_AT_FRAMES * 1.5);
  });
});
