import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BusOptions, Delivery, IngressBus } from "../backends/ingress-bus.ts";
import { createMemoryDeviceStore } from "../backends/memory-device-store.ts";
import { createMemoryIngressBus } from "../backends/memory-ingress-bus.ts";
import { createMemoryMailbox, type MailboxImplOptions, type PurgingMailbox } from "../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../backends/memory-push-queue.ts";
import { openSqliteDb, type SqliteDb, type SqliteSync } from "../backends/sqlite-db.ts";
import { SCHEMA_VERSION } from "../backends/sqlite-migrations.ts";
import { createSqliteDeviceStore } from "../backends/sqlite-device-store.ts";
import { createSqliteIngressBus } from "../backends/sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "../backends/sqlite-mailbox.ts";
import { createSqlitePushQueue } from "../backends/sqlite-push-queue.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import { describeDeviceStoreContract } from "./contracts/device-store.contract.ts";
import { manualClock, sleep, waitFor, type Fixture, type FixtureFactory } from "./contracts/fixture.ts";
import { busRecord, describeIngressBusContract } from "./contracts/ingress-bus.contract.ts";
import { describeMailboxContract, mailboxEntry } from "./contracts/mailbox.contract.ts";
import { sqliteResidue } from "./helpers/residue.ts";
import { describeMailboxLifecycleContract, type LifecycleFixture } from "./contracts/mailbox-lifecycle.contract.ts";
import { describePresenceStoreContract } from "./contracts/presence-store.contract.ts";
import { describePushQueueContract } from "./contracts/push-queue.contract.ts";

interface Closable {
  close(): Promise<void>;
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "routing-test-"));
}

function memoryFactory<T extends Closable, O>(make: (opts: O) => T): FixtureFactory<T, O> {
  return async () => {
    const opened: T[] = [];
    return {
      async open(opts) {
        const backend = make(opts);
        opened.push(backend);
        return backend;
      },
      async teardown() {
        for (const backend of opened) await backend.close();
      },
    };
  };
}

/** Every `open` is a new connection to the same fresh database, like a process restart. */
function sqliteFactory<T extends Closable, O>(make: (db: SqliteDb, opts: O) => T, sync: SqliteSync = "normal"): FixtureFactory<T, O> {
  return async () => {
    const dir = tempDir();
    const dbs: SqliteDb[] = [];
    const opened: T[] = [];
    return {
      async open(opts) {
        const db = openSqliteDb({ dataDir: dir, sync });
        dbs.push(db);
        const backend = make(db, opts);
        opened.push(backend);
        return backend;
      },
      async teardown() {
        for (const backend of opened) await backend.close();
        for (const db of dbs) db.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

describeIngressBusContract(
  "memory",
  memoryFactory((opts: BusOptions) => createMemoryIngressBus(opts)),
  { durable: false },
);
describeIngressBusContract(
  "sqlite",
  sqliteFactory((db, opts: BusOptions) => createSqliteIngressBus(db, opts), "full"),
  { durable: true },
);

describeMailboxContract("memory", memoryFactory(createMemoryMailbox));
describeMailboxContract("sqlite", sqliteFactory(createSqliteMailbox));

describeMailboxLifecycleContract("memory", memoryFactory(createMemoryMailbox));
// The embedded default's durability (synchronous = FULL), so the printed latencies are the default's.
describeMailboxLifecycleContract("sqlite", async (): Promise<LifecycleFixture> => {
  const dir = tempDir();
  const db = openSqliteDb({ dataDir: dir, sync: "full" });
  const opened: PurgingMailbox[] = [];
  return {
    async open(opts) {
      const mailbox = createSqliteMailbox(db, opts);
      opened.push(mailbox);
      return mailbox;
    },
    async rawMessageIds(urn) {
      return db.statement<[Urn], string>("SELECT message_id FROM mailbox WHERE recipient_id = ? ORDER BY seq").pluck().all(urn);
    },
    async residue(urn) {
      return sqliteResidue(db, urn);
    },
    async teardown() {
      for (const m of opened) await m.close();
      db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describeDeviceStoreContract("memory", memoryFactory(createMemoryDeviceStore));
describeDeviceStoreContract("sqlite", sqliteFactory(createSqliteDeviceStore));

describePushQueueContract(
  "memory",
  memoryFactory(() => createMemoryPushQueue()),
);
describePushQueueContract(
  "sqlite",
  sqliteFactory((db) => createSqlitePushQueue(db)),
);

describePresenceStoreContract("memory", memoryFactory(createMemoryPresenceStore));

describe("SqliteDb", () => {
  let dir: string;
  let db: SqliteDb;
  beforeEach(() => {
    dir = path.join(tempDir(), "nested", "data");
    db = openSqliteDb({ dataDir: dir, sync: "full" });
    db.statement("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").run();
  });
  afterEach(() => {
    db.close();
    fs.rmSync(path.dirname(path.dirname(dir)), { recursive: true, force: true });
  });

  /** A second connection: sees only what was committed. */
  function committed(key: string): number | undefined {
    const other = new Database(path.join(dir, "routing.db"), { readonly: true });
    try {
      return other.prepare<[string], number>("SELECT v FROM t WHERE k = ?").pluck().get(key);
    } finally {
      other.close();
    }
  }

  it("creates <dataDir>/routing.db in WAL mode with the requested synchronous level, migrated", () => {
    expect(fs.existsSync(path.join(dir, "routing.db"))).toBe(true);
    expect(db.statement<[], string>("PRAGMA journal_mode").pluck().get()).toBe("wal");
    // `full`: the connection commits without an fsync (1 = NORMAL) and the WAL's fdatasync runs off
    // the event loop before a write resolves (the WAL sync tests below); `normal` has no sync at all.
    expect(db.statement<[], number>("PRAGMA synchronous").pluck().get()).toBe(1);
    expect(db.statement<[], number>("PRAGMA user_version").pluck().get()).toBe(SCHEMA_VERSION);
    const normal = openSqliteDb({ dataDir: dir, sync: "normal" });
    try {
      expect(normal.statement<[], number>("PRAGMA synchronous").pluck().get()).toBe(1);
      expect(normal.statement<[], number>("PRAGMA user_version").pluck().get()).toBe(SCHEMA_VERSION);
    } finally {
      normal.close();
    }
  });

  it("commits every write queued in one tick in a single transaction, results in order", async () => {
    const insert = db.statement<[string, number]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const before = db.commits;
    const results = await Promise.all([1, 2, 3, 4].map((v) => db.write(() => insert.run(`k${v}`, v).changes * v)));
    expect(results).toEqual([1, 2, 3, 4]);
    expect(db.commits - before).toBe(1);
    expect([1, 2, 3, 4].map((v) => committed(`k${v}`))).toEqual([1, 2, 3, 4]);
  });

  it("full: resolves a write only once an fdatasync of the WAL that began after its commit returned; writes queued meanwhile commit together after it", async () => {
    const held: Array<() => void> = [];
    const walSyncs: number[] = [];
    const slow = openSqliteDb({
      dataDir: path.join(dir, "slow"),
      sync: "full",
      dataSync: (fd, done) => {
        walSyncs.push(fd);
        held.push(() => fs.fdatasync(fd, done));
      },
    });
    try {
      slow.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
      const insert = slow.statement<[string]>("INSERT INTO t (k) VALUES (?)");
      const settled: string[] = [];
      const first = slow.writeStatement(() => insert.run("a")).then(() => settled.push("a"));
      await waitFor(() => held.length === 1, "a WAL sync started");
      // Committed but not answered while its sync is held.
      expect(slow.commits).toBe(1);
      const second = slow.writeStatement(() => insert.run("b")).then(() => settled.push("b"));
      const third = slow.writeStatement(() => insert.run("c")).then(() => settled.push("c"));
      await sleep(20);
      // Queued while the sync runs: they wait, uncommitted, and commit together once it returned.
      expect(settled).toEqual([]);
      expect(slow.commits).toBe(1);
      held.shift()?.();
      await first;
      expect(settled).toEqual(["a"]);
      // "b" and "c": one transaction, one more sync.
      await waitFor(() => held.length === 1, "the next WAL sync started");
      expect(slow.commits).toBe(2);
      expect(settled).toEqual(["a"]);
      held.shift()?.();
      await Promise.all([second, third]);
      expect(settled).toEqual(["a", "b", "c"]);
      expect(walSyncs.length).toBe(2);
      expect(slow.syncs).toBe(2);
    } finally {
      slow.close();
    }
  });

  it("full: starts WAL syncs at least syncSpacingMs apart; writes meanwhile share the next", async () => {
    const starts: number[] = [];
    const spaced = openSqliteDb({
      dataDir: path.join(dir, "spaced"),
      sync: "full",
      syncSpacingMs: 80,
      dataSync: (fd, done) => {
        starts.push(performance.now());
        fs.fdatasync(fd, done);
      },
    });
    try {
      spaced.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
      const insert = spaced.statement<[string]>("INSERT INTO t (k) VALUES (?)");
      await spaced.writeStatement(() => insert.run("a"));
      const next = await Promise.all([spaced.writeStatement(() => insert.run("b")), sleep(5).then(() => spaced.writeStatement(() => insert.run("c")))]);
      expect(next).toHaveLength(2);
      expect(starts).toHaveLength(2);
      expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(79);
    } finally {
      spaced.close();
    }
  });

  it("full: a failed WAL sync rejects the writes it covered, and later writes sync again", async () => {
    let fail = true;
    const failing = openSqliteDb({
      dataDir: path.join(dir, "failing"),
      sync: "full",
      dataSync: (fd, done) => {
        if (fail) done(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
        else fs.fdatasync(fd, done);
      },
    });
    try {
      failing.statement("CREATE TABLE t (k TEXT PRIMARY KEY)").run();
      const insert = failing.statement<[string]>("INSERT INTO t (k) VALUES (?)");
      await expect(failing.writeStatement(() => insert.run("a"))).rejects.toThrow("EIO");
      fail = false;
      await expect(failing.writeStatement(() => insert.run("b"))).resolves.toBeDefined();
    } finally {
      failing.close();
    }
  });

  it("resolves a write only once it is committed", async () => {
    const insert = db.statement<[string, number]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const seen = await db.write(() => insert.run("k", 7)).then(() => committed("k"));
    expect(seen).toBe(7);
  });

  it("rolls back and rejects only a single-statement write that failed, without a savepoint", async () => {
    const insert = db.statement<[string, number]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const before = db.commits;
    const outcomes = await Promise.allSettled([
      db.writeStatement(() => insert.run("a", 1)),
      db.writeStatement(() => insert.run("a", 2)), // primary-key violation
      db.write(() => insert.run("b", 3)),
      db.writeStatement(() => insert.run("c", 4)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(db.commits - before).toBe(1);
    expect([committed("a"), committed("b"), committed("c")]).toEqual([1, 3, 4]);
  });

  it("rolls back and rejects only the write that threw", async () => {
    const insert = db.statement<[string, number]>("INSERT INTO t (k, v) VALUES (?, ?)");
    const outcomes = await Promise.allSettled([
      db.write(() => insert.run("a", 1)),
      db.write(() => {
        insert.run("b", 2);
        insert.run("a", 3); // primary-key violation: "b" must be rolled back with it
      }),
      db.write(() => insert.run("c", 4)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect([committed("a"), committed("b"), committed("c")]).toEqual([1, undefined, 4]);
  });

  it("rejects writes after close, and roles report BACKEND_UNAVAILABLE", async () => {
    const mailbox = createSqliteMailbox(db, { dedupTtlMs: 1_000 });
    db.close();
    await expect(db.write(() => 1)).rejects.toThrow();
    const err = await mailbox.store(mailboxEntry("urn:sm:user:a" as Urn, "m")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RoutingError);
    expect((err as RoutingError).code).toBe("BACKEND_UNAVAILABLE");
    expect((err as RoutingError).cause).toBeDefined();
    await mailbox.close();
  });

  it("rejects a publish it could not commit with BACKEND_UNAVAILABLE, accepting nothing", async () => {
    const bus = createSqliteIngressBus(db, { maxAttempts: 3, retryBaseMs: 5 });
    db.close();
    const err = await bus.publish(busRecord(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RoutingError);
    expect((err as RoutingError).code).toBe("BACKEND_UNAVAILABLE");
    expect((err as RoutingError).message).not.toContain("c1ph3r");
    expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0 });
    expect(await bus.ready()).toBe(false);
    await bus.close();
  });

  it("keeps data and schema across re-open", async () => {
    const devices = createSqliteDeviceStore(db);
    await devices.register("urn:sm:user:a" as Urn, "tok", "fcm");
    await devices.close();
    db.close();
    db = openSqliteDb({ dataDir: dir, sync: "full" });
    expect((await createSqliteDeviceStore(db).list("urn:sm:user:a" as Urn)).map((t) => t.token)).toEqual(["tok"]);
  });

  it("keeps the mailbox usage per group transaction: exact for stores and acks in one group, nothing from a group rolled back", async () => {
    const mailbox = createSqliteMailbox(db, { dedupTtlMs: 60_000 });
    const [alice, bob] = ["urn:sm:user:alice", "urn:sm:user:bob"] as Urn[];
    const bytes = (urn: Urn, id: string) => Buffer.byteLength(mailboxEntry(urn, id).envelope);
    const usageRows = db.statement<[], number>("SELECT count(*) FROM mailbox_usage").pluck();
    await mailbox.store(mailboxEntry(alice, "a1"));
    const commits = db.commits;
    const acked = await Promise.all([
      mailbox.store(mailboxEntry(alice, "a2")),
      mailbox.ack(alice, ["a1"]),
      mailbox.store(mailboxEntry(bob, "b1")),
      mailbox.ack(bob, ["b1"]),
    ]);
    expect(acked).toEqual(["stored", 1, "stored", 1]);
    expect(db.commits - commits).toBe(1);
    expect(await mailbox.usage(alice)).toEqual({ count: 1, bytes: bytes(alice, "a2") });
    expect(await mailbox.usage(bob)).toEqual({ count: 0, bytes: 0 });
    expect(usageRows.get()).toBe(1);
    let fail = true;
    db.beforeCommit(() => {
      if (fail) throw new Error("the group fails");
    });
    await expect(mailbox.store(mailboxEntry(alice, "a3"))).rejects.toThrow();
    fail = false;
    await mailbox.store(mailboxEntry(alice, "a4"));
    expect(await mailbox.usage(alice)).toEqual({ count: 2, bytes: bytes(alice, "a2") + bytes(alice, "a4") });
    await mailbox.close();
  });
});

type MailboxFactory = FixtureFactory<PurgingMailbox, MailboxImplOptions>;
const mailboxImpls: Array<[string, MailboxFactory]> = [
  ["memory", memoryFactory(createMemoryMailbox)],
  ["sqlite", sqliteFactory(createSqliteMailbox)],
];

describe.each(mailboxImpls)("%s mailbox (beyond the contract)", (_name, factory) => {
  let fx: Fixture<PurgingMailbox, MailboxImplOptions>;
  beforeEach(async () => {
    fx = await factory();
  });
  afterEach(async () => {
    await fx.teardown();
  });

  it("purges expired de-duplication records only", async () => {
    const clock = manualClock();
    const mailbox = await fx.open({ dedupTtlMs: 1_000, now: clock.now });
    const alice = "urn:sm:user:alice" as Urn;
    await mailbox.store(mailboxEntry(alice, "old-1"));
    await mailbox.store(mailboxEntry(alice, "old-2"));
    clock.advance(600);
    await mailbox.store(mailboxEntry(alice, "young"));
    clock.advance(600);
    expect(await mailbox.purgeExpired()).toBe(2);
    expect(await mailbox.purgeExpired()).toBe(0);
    expect(await mailbox.store(mailboxEntry(alice, "young"))).toBe("duplicate");
  });

  it("treats a message still unacked after its window as a duplicate", async () => {
    const clock = manualClock();
    const mailbox = await fx.open({ dedupTtlMs: 1_000, now: clock.now });
    const alice = "urn:sm:user:alice" as Urn;
    await mailbox.store(mailboxEntry(alice, "m"));
    clock.advance(5_000);
    expect(await mailbox.store(mailboxEntry(alice, "m"))).toBe("duplicate");
    expect(await mailbox.fetch(alice, 10)).toHaveLength(1);
  });
});

const busImpls: Array<[string, FixtureFactory<IngressBus, BusOptions>]> = [
  ["memory", memoryFactory((opts: BusOptions) => createMemoryIngressBus(opts))],
  ["sqlite", sqliteFactory((db, opts: BusOptions) => createSqliteIngressBus(db, opts))],
];

describe.each(busImpls)("%s bus (beyond the contract)", (_name, factory) => {
  let fx: Fixture<IngressBus, BusOptions>;
  beforeEach(async () => {
    fx = await factory();
  });
  afterEach(async () => {
    await fx.teardown();
  });

  it("treats a throwing handler as a failed attempt", async () => {
    const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
    const attempts: number[] = [];
    bus.consume((d) => {
      attempts.push(d.attempt);
      if (d.attempt === 1) throw new Error("boom");
      void d.ack();
    });
    await bus.publish(busRecord(1));
    await waitFor(async () => (await bus.stats()).backlog === 0, "acked on the second attempt");
    expect(attempts).toEqual([1, 2]);
  });

  it("ignores a nack from a delivery that was returned to the bus", async () => {
    const bus = await fx.open({ maxAttempts: 1, retryBaseMs: 5 });
    await bus.publish(busRecord(1));
    const first: Delivery[] = [];
    const sub = bus.consume((d) => first.push(d));
    await waitFor(() => first.length === 1, "delivery");
    await sub.close();
    await first[0].nack("too late");
    expect(await bus.stats()).toMatchObject({ backlog: 1, deadLetters: 0 });
    const second: Delivery[] = [];
    bus.consume((d) => second.push(d));
    await waitFor(() => second.length === 1, "redelivery");
    expect(second[0].attempt).toBe(1);
    // The stale delivery's ack still counts: the work was done.
    await first[0].ack();
    await second[0].ack();
    expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0 });
    await sleep(20);
    expect(second).toHaveLength(1);
  });

  it("does not redeliver records after the bus is closed", async () => {
    const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
    await bus.publish(busRecord(1));
    const seen: Delivery[] = [];
    bus.consume((d) => {
      seen.push(d);
      void d.nack("retry");
    });
    await waitFor(() => seen.length === 1, "delivery");
    await bus.close();
    await sleep(40);
    expect(seen).toHaveLength(1);
  });
});
