import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { PubSub } from "@google-cloud/pubsub";
import { Redis } from "ioredis";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeviceStore } from "../backends/device-store.ts";
import { createFirestoreDeviceStore } from "../backends/firestore-device-store.ts";
import { docId, openFirestore } from "../backends/firestore-client.ts";
import { createFirestoreMailbox } from "../backends/firestore-mailbox.ts";
import type { BusOptions, Delivery, IngressBus } from "../backends/ingress-bus.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import { openNatsIngressBus, type NatsIngressBusOptions } from "../backends/nats-ingress-bus.ts";
import { openPubSubIngressBus, type PubSubIngressBusOptions } from "../backends/pubsub-ingress-bus.ts";
import { createRedisMailbox } from "../backends/redis-mailbox.ts";
import { createRedisPresenceStore } from "../backends/redis-presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { sleep, waitFor, type FixtureFactory } from "./contracts/fixture.ts";
import { busRecord, describeIngressBusContract } from "./contracts/ingress-bus.contract.ts";
import { describeDeviceStoreContract, type DeviceStoreContractOptions } from "./contracts/device-store.contract.ts";
import { describeMailboxContract, mailboxEntry, NO_RETENTION, type MailboxContractOptions } from "./contracts/mailbox.contract.ts";
import { describePresenceStoreContract } from "./contracts/presence-store.contract.ts";
import { describeMailboxLifecycleContract, type LifecycleFixture } from "./contracts/mailbox-lifecycle.contract.ts";
import { startFirestoreEmulator, startPubSubEmulator, type Emulator } from "./helpers/emulators.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/*
 * The distributed backends against real servers: Redis and NATS (JetStream) on this machine, the
 * Google Pub/Sub and Firestore emulators started by this file. Every fixture uses names unique to
 * this run and deletes what it created.
 */

const REDIS_URL = process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const NATS_URL = process.env.ROUTING_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
let names = 0;

/** A name unique to this run and fixture: letters and digits only, so every backend accepts it. */
function unique(): string {
  return `${RUN}x${++names}`;
}

interface Closable {
  close(): Promise<void>;
}

/** Admin connection for cleanup and for looking at keys; closed after the file. */
const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
afterAll(async () => {
  await admin.quit().catch(() => admin.disconnect());
});

const deleteKeys = (prefix: string): Promise<void> => deleteRedisKeys(admin, prefix);

/** Every `open` is a new connection to the same key space: a restarted instance. */
function redisFactory<T extends Closable, O>(make: (keyPrefix: string, opts: O) => T): FixtureFactory<T, O> {
  return async () => {
    const keyPrefix = `routing-test:${unique()}:`;
    const opened: T[] = [];
    return {
      async open(opts) {
        const backend = make(keyPrefix, opts);
        opened.push(backend);
        return backend;
      },
      async teardown() {
        for (const backend of opened) await backend.close();
        await deleteKeys(keyPrefix);
      },
    };
  };
}

/** Every `open` is a new connection to the same stream and durable consumer: a restarted instance. */
function natsFactory(extra: Partial<NatsIngressBusOptions> = {}): FixtureFactory<IngressBus, BusOptions> {
  return async () => {
    const id = unique();
    const where = { servers: NATS_URL, stream: `RT_${id}`, consumer: "router", subjectPrefix: `rt.${id}` };
    const opened: IngressBus[] = [];
    return {
      async open(opts) {
        const bus = await openNatsIngressBus({ ...where, ...extra, ...opts });
        opened.push(bus);
        return bus;
      },
      async teardown() {
        for (const bus of opened) await bus.close();
        const nc = await connect({ servers: NATS_URL });
        try {
          const jsm = await nc.jetstreamManager();
          for (const stream of [where.stream, `${where.stream}_DEAD`]) await jsm.streams.delete(stream).catch(() => false);
        } finally {
          await nc.close();
        }
      },
    };
  };
}

const ALICE = "urn:sm:user:alice" as Urn;
const BOB = "urn:sm:user:bob" as Urn;

// ---------------------------------------------------------------- Redis

describePresenceStoreContract(
  "redis",
  redisFactory((keyPrefix, opts) => createRedisPresenceStore({ redis: REDIS_URL, keyPrefix, ttlMs: opts.ttlMs })),
  { injectableClock: false },
);

describeMailboxContract(
  "redis",
  redisFactory((keyPrefix, opts) => createRedisMailbox({ redis: REDIS_URL, keyPrefix, dedupTtlMs: opts.dedupTtlMs, retentionMs: opts.retentionMs })),
  { injectableClock: false },
);

/** Every key under `prefix` that names `urn`, or holds it as a sorted-set member. */
async function redisResidue(prefix: string, urn: string): Promise<string[]> {
  const hits: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    for (const key of keys) {
      if (key.includes(urn)) hits.push(key);
      else if ((await admin.type(key)) === "zset" && (await admin.zscore(key, urn)) !== null) hits.push(`${key} (member)`);
    }
  } while (cursor !== "0");
  return hits;
}

describeMailboxLifecycleContract("redis", async (): Promise<LifecycleFixture> => {
  const keyPrefix = `routing-test:${unique()}:`;
  const opened: Mailbox[] = [];
  return {
    async open(opts) {
      const mailbox = createRedisMailbox({ redis: REDIS_URL, keyPrefix, ...opts });
      opened.push(mailbox);
      return mailbox;
    },
    rawMessageIds: (urn) => admin.hkeys(`${keyPrefix}mbox:{${urn}}:entries`),
    residue: (urn) => redisResidue(keyPrefix, urn),
    async teardown() {
      for (const m of opened) await m.close();
      await deleteKeys(keyPrefix);
    },
  };
});

/** One backend on a fresh key space, closed and deleted afterwards. */
async function withRedis<T extends Closable>(make: (keyPrefix: string) => T, body: (backend: T, keyPrefix: string) => Promise<void>): Promise<void> {
  const keyPrefix = `routing-test:${unique()}:`;
  const backend = make(keyPrefix);
  try {
    await body(backend, keyPrefix);
  } finally {
    await backend.close();
    await deleteKeys(keyPrefix);
  }
}

describe("redis presence on the real clock", () => {
  const session = (sessionId: string, instanceId: string, protocol: "ws" | "mqtt" = "ws") => ({ sessionId, instanceId, protocol, connectedAt: 1 });

  it("drops a dead instance's sessions after one TTL, keeps a beating one's, and sweeps the dead one's index", async () => {
    await withRedis(
      (keyPrefix) => createRedisPresenceStore({ redis: REDIS_URL, keyPrefix, ttlMs: 2_000 }),
      async (presence, keyPrefix) => {
        await presence.add(ALICE, session("s1", "node-a"));
        await presence.add(ALICE, session("s2", "node-b"));
        await presence.add(BOB, session("s3", "node-b"));
        const beats = setInterval(() => void presence.heartbeat("node-a").catch(() => undefined), 250);
        try {
          await waitFor(async () => (await presence.get(ALICE)).length < 2, "node-b's session to expire", 15_000);
          expect((await presence.get(ALICE)).map((e) => e.sessionId)).toEqual(["s1"]);
          // Deleted on the way, not only hidden.
          expect(await admin.hkeys(`${keyPrefix}presence:${ALICE}`)).toEqual(["s1"]);
          // Nobody reads Bob: node-a's heartbeats sweep the dead instance's sessions and index.
          // The index goes last (one MULTI with the registry entry), after every session.
          await waitFor(async () => (await admin.exists(`${keyPrefix}instance-sessions:node-b`)) === 0, "node-b swept", 15_000);
          expect(await admin.zscore(`${keyPrefix}instances`, "node-b")).toBeNull();
          expect(await admin.exists(`${keyPrefix}presence:${BOB}`)).toBe(0);
        } finally {
          clearInterval(beats);
        }
        await waitFor(async () => (await presence.get(ALICE)).length === 0, "node-a's session to expire once it stops beating", 15_000);
      },
    );
  });

  it("moves a session re-added on another instance out of the old instance's index", async () => {
    await withRedis(
      (keyPrefix) => createRedisPresenceStore({ redis: REDIS_URL, keyPrefix, ttlMs: 60_000 }),
      async (presence, keyPrefix) => {
        await presence.add(ALICE, session("s1", "node-a"));
        await presence.add(ALICE, session("s1", "node-b", "mqtt"));
        expect(await presence.get(ALICE)).toEqual([session("s1", "node-b", "mqtt")]);
        expect(await admin.scard(`${keyPrefix}instance-sessions:node-a`)).toBe(0);
        expect(await admin.scard(`${keyPrefix}instance-sessions:node-b`)).toBe(1);
        await presence.remove(ALICE, "s1");
        expect(await admin.scard(`${keyPrefix}instance-sessions:node-b`)).toBe(0);
      },
    );
  });
});

describe("redis mailbox on the real clock", () => {
  it("forgets a pair once the de-duplication window has passed, and not before", async () => {
    await withRedis(
      (keyPrefix) => createRedisMailbox({ redis: REDIS_URL, keyPrefix, dedupTtlMs: 3_000, retentionMs: NO_RETENTION }),
      async (mailbox, keyPrefix) => {
        const dedupKey = `${keyPrefix}mbox:{${ALICE}}:dedup:m1`;
        expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("stored");
        expect(await mailbox.ack(ALICE, ["m1"])).toBe(1);
        expect(await admin.pttl(dedupKey)).toBeGreaterThan(0);
        expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("duplicate");
        await waitFor(async () => (await admin.exists(dedupKey)) === 0, "the window to end", 15_000);
        expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("stored");
        expect(await mailbox.fetch(ALICE, 10)).toHaveLength(1);
        expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("duplicate");
      },
    );
  });

  it("treats a message still unacked after its window as a duplicate", async () => {
    await withRedis(
      (keyPrefix) => createRedisMailbox({ redis: REDIS_URL, keyPrefix, dedupTtlMs: 500, retentionMs: NO_RETENTION }),
      async (mailbox, keyPrefix) => {
        await mailbox.store(mailboxEntry(ALICE, "m"));
        await waitFor(async () => (await admin.exists(`${keyPrefix}mbox:{${ALICE}}:dedup:m`)) === 0, "the window to end", 15_000);
        expect(await mailbox.store(mailboxEntry(ALICE, "m"))).toBe("duplicate");
        expect(await mailbox.fetch(ALICE, 10)).toHaveLength(1);
      },
    );
  });
});

// ---------------------------------------------------------------- NATS JetStream

describeIngressBusContract("nats", natsFactory(), { durable: true });

/** What backends.test.ts checks of the embedded buses beyond the contract, for a distributed one. */
function describeBusExtras(name: string, factory: FixtureFactory<IngressBus, BusOptions>, opts: { statsScope: "bus" | "consumer" }): void {
  describe(`${name} bus (beyond the contract)`, () => {
    it("treats a throwing handler as a failed attempt", async () => {
      const fx = await factory();
      try {
        const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
        const attempts: number[] = [];
        bus.consume((d) => {
          attempts.push(d.attempt);
          if (d.attempt === 1) throw new Error("boom");
          void d.ack();
        });
        await bus.publish(busRecord(1));
        await waitFor(() => attempts.length === 2, "second attempt");
        await waitFor(async () => (await bus.stats()).backlog === 0, "acked on the second attempt");
        expect(attempts).toEqual([1, 2]);
      } finally {
        await fx.teardown();
      }
    });

    it("ignores a nack from a delivery that was returned to the bus", async () => {
      const fx = await factory();
      try {
        const bus = await fx.open({ maxAttempts: 1, retryBaseMs: 5 });
        await bus.publish(busRecord(1));
        const first: Delivery[] = [];
        const sub = bus.consume((d) => first.push(d));
        await waitFor(() => first.length === 1, "delivery");
        await sub.close();
        await first[0].nack("too late");
        expect(await bus.stats()).toMatchObject({ backlog: opts.statsScope === "bus" ? 1 : 0, deadLetters: 0 });
        const second: Delivery[] = [];
        bus.consume((d) => second.push(d));
        await waitFor(() => second.length === 1, "redelivery");
        expect(second[0].attempt).toBe(1);
        await second[0].ack();
        expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0 });
        await sleep(50);
        expect(second).toHaveLength(1);
      } finally {
        await fx.teardown();
      }
    });

    it("does not redeliver records after the bus is closed", async () => {
      const fx = await factory();
      try {
        const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
        await bus.publish(busRecord(1));
        const seen: Delivery[] = [];
        bus.consume((d) => {
          seen.push(d);
          void d.nack("retry").catch(() => undefined);
        });
        await waitFor(() => seen.length === 1, "delivery");
        await bus.close();
        await sleep(100);
        expect(seen).toHaveLength(1);
      } finally {
        await fx.teardown();
      }
    });

    it("lets two instances share the work, each record delivered to one of them", async () => {
      const fx = await factory();
      try {
        const a = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
        const b = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
        const seen: string[] = [];
        const handler = (d: Delivery) => {
          seen.push(d.record.messageId);
          void d.ack();
        };
        a.consume(handler);
        b.consume(handler);
        await Promise.all([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => (i % 2 === 0 ? a : b).publish(busRecord(i))));
        await waitFor(() => seen.length >= 10, "10 deliveries");
        await waitFor(async () => (await a.stats()).backlog === 0 && (await b.stats()).backlog === 0, "both drained");
        await sleep(50);
        expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `msg-${i}`).sort());
      } finally {
        await fx.teardown();
      }
    });
  });
}

describeBusExtras("nats", natsFactory(), { statsScope: "bus" });

/**
 * Publishes one record and lets a consumer close with it in flight `times` times (each sees attempt
 * 1: a return is not a failed attempt), then consumes again until the engine's own limit has made
 * it a dead letter: that dead letter (its reason names the count), and what the last consumer got.
 */
async function unsettledUntilDead(bus: IngressBus, times: number) {
  await bus.publish(busRecord(1));
  for (let i = 1; i <= times; i++) {
    const seen: Delivery[] = [];
    const sub = bus.consume((d) => seen.push(d));
    await waitFor(() => seen.length === 1, `delivery ${i}`, 15_000);
    expect(seen[0].attempt).toBe(1);
    await sub.close();
  }
  const after: Delivery[] = [];
  bus.consume((d) => after.push(d));
  await waitFor(async () => (await bus.stats()).deadLetters === 1, "the dead letter", 15_000);
  const dead = await bus.deadLetters(10);
  expect(dead).toMatchObject([{ record: busRecord(1), attempts: 0 }]);
  expect(dead[0].reason).toContain(`delivered ${times} times`);
  return { dead, after };
}

describe("nats bus and the server's max_deliver", () => {
  it("dead-letters a record that keeps coming back unsettled, through the MAX_DELIVERIES advisory", async () => {
    const fx = await natsFactory({ maxUnsettledDeliveries: 3 })();
    try {
      const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
      // The server delivers it no more after three; the advisory moves it to the dead letters.
      const { dead, after } = await unsettledUntilDead(bus, 3);
      expect(await bus.stats()).toMatchObject({ backlog: 0, deadLetters: 1 });
      // Replayed, it is a fresh record: delivered again, attempt 1.
      expect(await bus.replayDeadLetters([dead[0].id])).toBe(1);
      await waitFor(() => after.length === 1, "the replayed record", 15_000);
      expect(after[0]).toMatchObject({ record: busRecord(1), attempt: 1 });
      await after[0].ack();
      expect(await bus.stats()).toMatchObject({ backlog: 0, deadLetters: 0 });
    } finally {
      await fx.teardown();
    }
  });

  it("brings an existing consumer to the configured max_deliver and ack wait", async () => {
    const id = unique();
    const where = { servers: NATS_URL, stream: `RT_${id}`, consumer: "router", subjectPrefix: `rt.${id}` };
    const nc = await connect({ servers: NATS_URL });
    try {
      const first = await openNatsIngressBus({ ...where, maxAttempts: 3, retryBaseMs: 5, maxUnsettledDeliveries: 4, ackWaitMs: 2_000 });
      await first.close();
      const jsm = await nc.jetstreamManager();
      expect((await jsm.consumers.info(where.stream, "router")).config).toMatchObject({ max_deliver: 4, ack_wait: 2e9 });
      const second = await openNatsIngressBus({ ...where, maxAttempts: 3, retryBaseMs: 5, maxUnsettledDeliveries: 2, ackWaitMs: 3_000 });
      await second.close();
      expect((await jsm.consumers.info(where.stream, "router")).config).toMatchObject({ max_deliver: 2, ack_wait: 3e9 });
    } finally {
      const jsm = await nc.jetstreamManager();
      for (const stream of [where.stream, `${where.stream}_DEAD`]) await jsm.streams.delete(stream).catch(() => false);
      await nc.close();
    }
  });
});

// ---------------------------------------------------------------- Google Pub/Sub (emulator)

describe("on the Pub/Sub emulator", () => {
  let emulator: Emulator | undefined;
  const PROJECT = "routing-test";
  beforeAll(async () => {
    emulator = await startPubSubEmulator();
  });
  afterAll(async () => {
    await emulator?.stop();
  });

  /** Every `open` is a new client on the same topics and subscriptions: a restarted instance. */
  function pubsubFactory(extra: Partial<PubSubIngressBusOptions> = {}): FixtureFactory<IngressBus, BusOptions> {
    return async () => {
      const host = emulator?.host;
      if (host === undefined) throw new Error("the Pub/Sub emulator is not running");
      const id = unique();
      const where = { projectId: PROJECT, emulatorHost: host, topic: `rt-${id}-in`, subscription: `rt-${id}-router` };
      const opened: IngressBus[] = [];
      return {
        async open(opts) {
          const bus = await openPubSubIngressBus({ ...where, ...extra, ...opts });
          opened.push(bus);
          return bus;
        },
        async teardown() {
          for (const bus of opened) await bus.close();
          const pubsub = new PubSub({ projectId: PROJECT, apiEndpoint: host, emulatorMode: true, universeDomain: "googleapis.com" });
          try {
            for (const sub of [where.subscription, `${where.subscription}-dead`])
              await pubsub
                .subscription(sub)
                .delete()
                .catch(() => undefined);
            for (const topic of [where.topic, `${where.topic}-dead`])
              await pubsub
                .topic(topic)
                .delete()
                .catch(() => undefined);
          } finally {
            await pubsub.close();
          }
        },
      };
    };
  }

  describeIngressBusContract("pubsub", pubsubFactory(), { durable: true, statsScope: "consumer" });
  describeBusExtras("pubsub", pubsubFactory(), { statsScope: "consumer" });

  it("dead-letters a record that keeps coming back unsettled, by the subscription's policy", async () => {
    const fx = await pubsubFactory({ maxUnsettledDeliveries: 5, redeliveryBackoff: { minimumMs: 100, maximumMs: 200 } })();
    try {
      const bus = await fx.open({ maxAttempts: 3, retryBaseMs: 5 });
      // Pub/Sub forwards it after five instead of the next delivery (the emulator only while someone pulls).
      const { after } = await unsettledUntilDead(bus, 5);
      await sleep(200);
      expect(after).toEqual([]);
    } finally {
      await fx.teardown();
    }
  });
});

// ---------------------------------------------------------------- Google Firestore (emulator)

describe("on the Firestore emulator", () => {
  let emulator: Emulator | undefined;
  beforeAll(async () => {
    emulator = await startFirestoreEmulator();
  });
  afterAll(async () => {
    await emulator?.stop();
  });

  function host(): string {
    if (emulator === undefined) throw new Error("the Firestore emulator is not running");
    return emulator.host;
  }

  /** Every fixture is its own emulator project (deleted afterwards); every `open` a new client on it. */
  function firestoreFactory<T extends Closable, O>(make: (projectId: string, opts: O) => T): FixtureFactory<T, O> {
    return async () => {
      const projectId = `routing-test-${unique()}`;
      const opened: T[] = [];
      return {
        async open(opts) {
          const backend = make(projectId, opts);
          opened.push(backend);
          return backend;
        },
        async teardown() {
          for (const backend of opened) await backend.close();
          await deleteProject(projectId);
        },
      };
    };
  }

  const mailboxes = firestoreFactory((projectId, opts: MailboxContractOptions): Mailbox =>
    createFirestoreMailbox({ firestore: { projectId, emulatorHost: host() }, dedupTtlMs: opts.dedupTtlMs, now: opts.now, retentionMs: opts.retentionMs }),
  );
  const devices = firestoreFactory((projectId, opts: DeviceStoreContractOptions): DeviceStore =>
    createFirestoreDeviceStore({ firestore: { projectId, emulatorHost: host() }, now: opts.now }),
  );

  describeMailboxContract("firestore", mailboxes);

  /** Every document of the project (all collections, all depths) that names `urn` in its path or data. */
  async function firestoreResidue(firestore: ReturnType<typeof openFirestore>, urn: string): Promise<string[]> {
    const hits: string[] = [];
    const visit = async (collections: Awaited<ReturnType<typeof firestore.listCollections>>): Promise<void> => {
      for (const collection of collections) {
        for (const ref of await collection.listDocuments()) {
          const snap = await ref.get();
          if (ref.path.includes(docId(urn)) && snap.exists) hits.push(ref.path);
          else if (snap.exists && JSON.stringify(snap.data()).includes(urn)) hits.push(ref.path);
          await visit(await ref.listCollections());
        }
      }
    };
    await visit(await firestore.listCollections());
    return hits;
  }

  describeMailboxLifecycleContract(
    "firestore",
    async (): Promise<LifecycleFixture> => {
      const projectId = `routing-test-${unique()}`;
      const firestore = openFirestore({ projectId, emulatorHost: host() });
      const opened: Mailbox[] = [];
      return {
        async open(opts) {
          const mailbox = createFirestoreMailbox({ firestore, ...opts });
          opened.push(mailbox);
          return mailbox;
        },
        async rawMessageIds(urn) {
          const snap = await firestore.collection(`mailboxes/${docId(urn)}/messages`).get();
          return snap.docs.sort((a, b) => (a.get("seq") as number) - (b.get("seq") as number)).map((d) => d.get("messageId") as string);
        },
        residue: (urn) => firestoreResidue(firestore, urn),
        async teardown() {
          for (const m of opened) await m.close();
          await firestore.terminate();
          await deleteProject(projectId);
        },
      };
    },
    // 10,000 as on every store (about two minutes on the emulator here); ROUTING_TEST_FIRESTORE_BULK lowers it for a quick run.
    { bulk: Number(process.env.ROUTING_TEST_FIRESTORE_BULK ?? 10_000) },
  );
  describeDeviceStoreContract("firestore", devices);

  async function deleteProject(projectId: string): Promise<void> {
    const res = await fetch(`http://${host()}/emulator/v1/projects/${projectId}/databases/(default)/documents`, { method: "DELETE" });
    expect(res.ok).toBe(true);
  }

  it("keeps ids with slashes, dots and percent signs apart, in the documented layout, on a shared client", async () => {
    const projectId = `routing-test-${unique()}`;
    const firestore = openFirestore({ projectId, emulatorHost: host() });
    const mailbox = createFirestoreMailbox({ firestore, dedupTtlMs: 60_000, retentionMs: NO_RETENTION });
    const store = createFirestoreDeviceStore({ firestore });
    try {
      const urn = "urn:sm:user:a/b" as Urn;
      const ids = ["x/y", "x%2Fy", ".", "..", "__id__", "%", ""];
      for (const id of ids) expect(await mailbox.store(mailboxEntry(urn, id))).toBe("stored");
      expect(await mailbox.store(mailboxEntry("urn:sm:user:a%2Fb" as Urn, "x/y"))).toBe("stored");
      expect((await mailbox.fetch(urn, 20)).map((e) => e.messageId)).toEqual(ids);
      expect(new Set(ids.map(docId)).size).toBe(ids.length);
      const doc = await firestore.doc(`mailboxes/${docId("urn:sm:user:a%2Fb")}/messages/${docId("x/y")}`).get();
      expect(doc.data()).toMatchObject({ messageId: "x/y", priority: 0, high: false, envelope: mailboxEntry(urn, "x/y").envelope });
      expect(typeof doc.get("seq")).toBe("number");
      expect(await mailbox.ack(urn, [...ids, ...ids])).toBe(ids.length);

      await store.register(urn, "tok/1", "apns");
      await store.register(ALICE, "tok/1", "fcm");
      expect(await store.list(urn)).toEqual([]);
      expect((await store.list(ALICE)).map((t) => t.token)).toEqual(["tok/1"]);
      expect((await firestore.doc(`deviceTokens/${docId("tok/1")}`).get()).get("owner")).toBe(ALICE);
      expect((await firestore.doc(`devices/${docId(urn)}`).get()).exists).toBe(false);
    } finally {
      // Borrowed client: closing the roles leaves it open.
      await mailbox.close();
      await store.close();
      expect(await firestore.collection("devices").limit(1).get()).toBeDefined();
      await firestore.terminate();
      await deleteProject(projectId);
    }
  });

  it("deploy/firestore.indexes.json declares the index fetch needs and the dedup TTL", () => {
    const file = JSON.parse(readFileSync(new URL("../deploy/firestore.indexes.json", import.meta.url), "utf8")) as {
      indexes: Array<{ collectionGroup: string; fields: Array<{ fieldPath: string; order: string }> }>;
      fieldOverrides: Array<{ collectionGroup: string; fieldPath: string; ttl?: boolean }>;
    };
    expect(file.indexes).toContainEqual(
      expect.objectContaining({
        collectionGroup: "messages",
        fields: [
          { fieldPath: "high", order: "DESCENDING" },
          { fieldPath: "seq", order: "ASCENDING" },
        ],
      }),
    );
    expect(file.fieldOverrides).toContainEqual(expect.objectContaining({ collectionGroup: "dedup", fieldPath: "expireAt", ttl: true }));
  });
});
