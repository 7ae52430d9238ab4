import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { openSqliteDb } from "../backends/sqlite-db.ts";
import { loadConfig } from "../config/load.ts";
import { createQuota } from "../lifecycle/quota.ts";
import type { Urn } from "../core/urn.ts";
import { deadLettersCommand, dropDeadLettersCommand, purgeCommand, replayCommand } from "../repl/commands.ts";
import { waitFor } from "./contracts/fixture.ts";
import { connect, envelope, http, type TestSocket } from "./helpers/clients.ts";
import { startFirestoreEmulator, type Emulator } from "./helpers/emulators.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { mqttConnect, type MqttTestClient } from "./helpers/mqtt.ts";
import { parseProm, sample } from "./helpers/prom.ts";
import { sqliteResidue } from "./helpers/residue.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/*
 * The data life cycle (CONTRACT, "Retention, quotas and purge") through the running service:
 * quotas on HTTP, WebSocket and MQTT on every store, retention on the real clock, purge and the
 * REPL commands. The stores' own guarantees are in test/contracts/mailbox-lifecycle.contract.ts.
 */

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  return sample(parseProm(text), name, labels);
}

const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
const REDIS_URL = process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

async function deletePrefix(prefix: string): Promise<void> {
  const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    await deleteRedisKeys(admin, prefix);
  } finally {
    await admin.quit();
  }
}

/** Publishes at QoS 1; resolves "acked" on the PUBACK. */
function publishQos1(c: MqttTestClient, body: unknown): Promise<"acked"> {
  return new Promise((resolve, reject) =>
    c.client.publish("envelopes/send", JSON.stringify(body), { qos: 1 }, (err) => (err ? reject(err) : resolve("acked"))),
  );
}

type StoreCase = { name: string; env: () => Record<string, string>; setup?: () => Promise<void>; cleanup?: () => Promise<void> };

let firestore: Emulator | undefined;
const redisPrefix = `routing-test:${RUN}:quota:`;
const stores: StoreCase[] = [
  { name: "embedded", env: () => ({}) },
  {
    name: "redis",
    env: () => ({ ROUTING_STORE: "redis", ROUTING_REDIS_URL: REDIS_URL, ROUTING_REDIS_PREFIX: redisPrefix }),
    cleanup: () => deletePrefix(redisPrefix),
  },
  {
    name: "firestore",
    env: () => ({ ROUTING_STORE: "firestore", ROUTING_FIRESTORE_ENDPOINT: firestore?.host ?? "", ROUTING_GCP_PROJECT_ID: `routing-test-${RUN}` }),
    setup: async () => {
      firestore = await startFirestoreEmulator();
    },
    cleanup: async () => {
      await firestore?.stop();
    },
  },
];

describe.each(stores)("quota on the $name store: MAILBOX_FULL on HTTP, WebSocket and MQTT", (store) => {
  let svc: RunningService;
  const bob = `urn:sm:user:bob-${RUN}`;
  const carol = `urn:sm:user:carol-${RUN}`;
  const alice = `urn:sm:user:alice-${RUN}`;
  const open: Array<{ close(): Promise<unknown> }> = [];

  beforeAll(async () => {
    await store.setup?.();
    svc = await startService({ ...store.env(), ROUTING_MAILBOX_MAX_MESSAGES: "3", ROUTING_MAILBOX_MAX_BYTES: "0" });
  }, 90_000);
  afterAll(async () => {
    for (const c of open) await c.close().catch(() => undefined);
    expect(await svc?.stop()).toBe(0);
    removeDir(svc.dataDir);
    await store.cleanup?.();
  }, 60_000);

  it("refuses the recipient at its quota on every path, serves another, and accepts again after an ack", async () => {
    const [aliceToken, bobToken] = await Promise.all([token(alice), token(bob)]);
    for (let i = 0; i < 3; i++) expect((await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(bob) })).status).toBe(202);
    await waitFor(async () => (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages?.length === 3, "3 messages stored for bob", 15_000);

    // HTTP: 429 MAILBOX_FULL with Retry-After (whole seconds) and retryAfterMs.
    const refused = await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(bob) });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: "MAILBOX_FULL", retryAfterMs: 5_000 });
    expect(refused.headers.get("retry-after")).toBe("5");
    // An ephemeral message is never counted nor refused: it is never stored.
    expect((await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(bob, { isEphemeral: true }) })).status).toBe(202);
    // Another recipient is served.
    expect((await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(carol) })).status).toBe(202);

    // WebSocket: an error frame with the send's ref; the session goes on.
    const ws: TestSocket = await connect(svc.port, { token: aliceToken });
    open.push(ws);
    ws.send({ type: "send", ref: "full", envelope: envelope(bob) });
    expect(await ws.next((f) => f.ref === "full")).toMatchObject({ type: "error", code: "MAILBOX_FULL", retryAfterMs: 5_000 });
    ws.send({ type: "send", ref: "other", envelope: envelope(carol) });
    expect(await ws.next((f) => f.ref === "other")).toMatchObject({ type: "sent" });

    // MQTT 3.1.1: no PUBACK, an error frame on the receive topic; the connection stays.
    const mq = await mqttConnect(`mqtt://127.0.0.1:${svc.mqttPort}`, { username: "alice", password: aliceToken });
    open.push({ close: () => mq.end() });
    await mq.client.subscribeAsync(`clients/${alice}/receive`, { qos: 1 });
    let fullAcked = false;
    void publishQos1(mq, envelope(bob, { messageId: "mqtt-full" })).then(
      () => (fullAcked = true),
      () => undefined,
    );
    const frame = await mq.next((r) => r.frame.type === "error");
    expect(frame.frame).toMatchObject({ code: "MAILBOX_FULL", ref: "mqtt-full", retryAfterMs: 5_000 });
    // Something later was acknowledged; the refused one was not.
    expect(await publishQos1(mq, envelope(carol))).toBe("acked");
    expect(fullAcked).toBe(false);
    expect(mq.client.connected).toBe(true);

    // Bob acks one: sends to him are accepted again (once the quota's short cache has caught up).
    const fetched = (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages ?? [];
    expect((await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: [fetched[0].id] } })).status).toBe(204);
    await waitFor(
      async () => (await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(bob) })).status === 202,
      "a send to bob accepted again",
      15_000,
    );
    await waitFor(async () => (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages?.length === 3, "bob back at 3", 15_000);
    await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: fetched.slice(1).map((m) => m.id) } });
    ws.send({ type: "send", ref: "again", envelope: envelope(bob) });
    await waitFor(async () => ws.frames.some((f) => f.ref === "again"), "an answer to the WebSocket send", 15_000);
    if (ws.frames.find((f) => f.ref === "again")?.type !== "sent") {
      // The quota's cache still held the full mailbox: the answer was MAILBOX_FULL; a retry after it is accepted.
      await waitFor(
        async () => {
          ws.send({ type: "send", ref: "again2", envelope: envelope(bob) });
          return (await ws.next((f) => f.ref === "again2")).type === "sent";
        },
        "a WebSocket send to bob accepted again",
        15_000,
      );
    }
    expect(await publishQos1(mq, envelope(bob))).toBe("acked");

    const metrics = (await http(svc.url, "GET", "/metrics")).text;
    for (const path of ["http", "ws", "mqtt"]) expect(metricValue(metrics, "routing_mailbox_full_total", { path })).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, "routing_mailbox_largest_depth", { rank: "1" })).toBeGreaterThanOrEqual(1);
    // Counts only: no URN in any metric line.
    expect(metrics).not.toContain(bob);
    await waitFor(async () => (await http(svc.url, "GET", "/status.json")).text.includes('"largest":['), "status page data", 5_000);
    const status = JSON.parse((await http(svc.url, "GET", "/status.json")).text) as { mailboxes: { largest: number[] } };
    expect(status.mailboxes.largest.length).toBeGreaterThan(0);
    expect(JSON.stringify(status)).not.toContain(bob);
  }, 90_000);
});

describe("retention on the real clock (embedded default)", () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await startService({ ROUTING_MAILBOX_RETENTION_SECONDS: "2", ROUTING_DEDUP_TTL_SECONDS: "2" });
  });
  afterAll(async () => {
    expect(await svc?.stop()).toBe(0);
    removeDir(svc.dataDir);
  });

  it("never returns a message past the retention and removes it from the database", async () => {
    const dave = `urn:sm:user:dave-${RUN}`;
    const [aliceToken, daveToken] = await Promise.all([token("alice"), token(dave)]);
    expect((await http(svc.url, "POST", "/send", { token: aliceToken, body: envelope(dave, { messageId: "short-lived" }) })).status).toBe(202);
    await waitFor(async () => (await http(svc.url, "GET", "/messages", { token: daveToken })).body.messages?.length === 1, "stored", 10_000);
    await waitFor(async () => (await http(svc.url, "GET", "/messages", { token: daveToken })).body.messages?.length === 0, "expired", 15_000);
    await waitFor(async () => metricValue((await http(svc.url, "GET", "/metrics")).text, "routing_mailbox_expired_total") >= 1, "swept", 15_000);
    const db = openSqliteDb({ dataDir: svc.dataDir, sync: "normal" });
    try {
      expect(db.statement<[string], number>("SELECT count(*) FROM mailbox WHERE recipient_id = ?").pluck().get(dave)).toBe(0);
      expect(db.statement<[string], number>("SELECT count(*) FROM mailbox_usage WHERE recipient_id = ?").pluck().get(dave)).toBe(0);
    } finally {
      db.close();
    }
  });
});

describe("10,000 expired messages swept from the embedded default while HTTP sends and fetches go on", () => {
  let node: InProcessNode;
  beforeAll(async () => {
    // A 2 s retention: the node's own sweep runs every second.
    node = await startInProcess({ ROUTING_MAILBOX_RETENTION_SECONDS: "2", ROUTING_DEDUP_TTL_SECONDS: "2" });
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("removes them all; every request's latency is printed (not asserted)", async () => {
    const mailbox = node.node.backends.mailbox;
    const seeded = 10_000;
    const live = `urn:sm:user:live-${RUN}`;
    const [senderToken, liveToken] = await Promise.all([token("sender"), token(live)]);
    // Warm-up (connections, token cache, first compilations), not measured.
    for (let i = 0; i < 5; i++) await http(node.url, "POST", "/send", { token: senderToken, body: envelope(live) });
    const old = Date.now() - 1_000;
    // Seeded straight into the store, a second old: they pass the 2 s retention a second from now.
    for (let i = 0; i < seeded; i += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, j) =>
          mailbox.store({
            recipientId: `urn:sm:user:gone${(i + j) % 100}` as Urn,
            messageId: `x${i + j}`,
            priority: 0,
            envelope: JSON.stringify({ n: i + j }),
            queuedAt: old,
          }),
        ),
      );
    }
    const latencies: number[] = [];
    const slow: string[] = [];
    const timed = async <T>(work: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const out = await work();
      const ms = performance.now() - t0;
      latencies.push(ms);
      if (ms > 50) slow.push(`${ms.toFixed(1)} ms at +${Date.now() - started} ms (expired so far: ${lastExpired})`);
      return out;
    };
    let lastExpired = 0;
    const expired = async () => (lastExpired = metricValue((await http(node.url, "GET", "/metrics")).text, "routing_mailbox_expired_total"));
    const started = Date.now();
    let rounds = 0;
    while ((await expired()) < seeded || rounds < 20) {
      expect((await timed(() => http(node.url, "POST", "/send", { token: senderToken, body: envelope(live) }))).status).toBe(202);
      const got = await timed(() => http(node.url, "GET", "/messages", { token: liveToken }));
      const ids = (got.body.messages ?? []).map((m) => m.id);
      if (ids.length > 0) await timed(() => http(node.url, "POST", "/messages/ack", { token: liveToken, body: { messageIds: ids } }));
      rounds++;
      if (Date.now() - started > 60_000) throw new Error("the sweep did not finish within a minute");
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
    console.log(
      `[embedded default, HTTP] ${seeded} expired messages swept in ${Date.now() - started} ms while ${rounds} send+fetch+ack rounds ran: ` +
        `${sorted.length} requests, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms, slower than 100 ms: ${sorted.filter((l) => l > 100).length}` +
        (slow.length > 0 ? `; over 50 ms: ${slow.join(", ")}` : ""),
    );
    expect(await mailbox.usage("urn:sm:user:gone7" as Urn)).toEqual({ count: 0, bytes: 0 });
    const db = openSqliteDb({ dataDir: node.node.config.dataDir, sync: "normal" });
    try {
      expect(db.statement<[], number>("SELECT count(*) FROM mailbox WHERE recipient_id LIKE 'urn:sm:user:gone%'").pluck().get()).toBe(0);
    } finally {
      db.close();
    }
  }, 120_000);
});

describe("configuration", () => {
  it("refuses a de-duplication window shorter than the retention, with a clear message", () => {
    expect(() => loadConfig({ ROUTING_MAILBOX_RETENTION_SECONDS: "600", ROUTING_DEDUP_TTL_SECONDS: "60" })).toThrow(
      /ROUTING_DEDUP_TTL_SECONDS=60 is shorter than ROUTING_MAILBOX_RETENTION_SECONDS=600/,
    );
    const { config } = loadConfig({});
    expect(config.dedupTtlSeconds).toBeGreaterThanOrEqual(config.mailboxRetentionSeconds);
    expect(config).toMatchObject({ mailboxRetentionSeconds: 2_592_000, mailboxMaxMessages: 10_000, mailboxMaxBytes: 67_108_864 });
  });
});

describe("mailbox.purge and the REPL commands (embedded default, in process)", () => {
  let node: InProcessNode;
  beforeAll(async () => {
    node = await startInProcess();
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("leaves nothing of the user in any table, answers the counts, and is idempotent", async () => {
    const erin = `urn:sm:user:erin-${RUN}` as Urn;
    const frank = `urn:sm:user:frank-${RUN}`;
    const [erinToken, frankToken] = await Promise.all([token(erin), token(frank)]);
    expect((await http(node.url, "POST", "/register-device", { token: erinToken, body: { token: "erin-device", platform: "fcm" } })).status).toBe(204);
    for (const id of ["e1", "e2", "e3"])
      expect((await http(node.url, "POST", "/send", { token: frankToken, body: envelope(erin, { messageId: id }) })).status).toBe(202);
    expect((await http(node.url, "POST", "/send", { token: erinToken, body: envelope(frank, { messageId: "to-frank" }) })).status).toBe(202);
    await waitFor(async () => (await http(node.url, "GET", "/messages", { token: erinToken })).body.messages?.length === 3, "3 stored", 10_000);
    await http(node.url, "POST", "/messages/ack", { token: erinToken, body: { messageIds: ["e1"] } });

    const counts = await node.node.broker.call<Record<string, number>, { urn: string }>("mailbox.purge", { urn: erin });
    expect(counts).toMatchObject({ messages: 2, dedup: 3, deviceTokens: 1 });
    const db = openSqliteDb({ dataDir: node.node.config.dataDir, sync: "normal" });
    try {
      // Frank's mailbox holds erin's URN inside the envelope she sent him (his data): leave it out.
      await http(node.url, "POST", "/messages/ack", { token: frankToken, body: { messageIds: ["to-frank"] } });
      await waitFor(async () => (await http(node.url, "GET", "/messages", { token: frankToken })).body.messages?.length === 0, "frank's mailbox empty", 10_000);
      expect(sqliteResidue(db, erin)).toEqual([]);
    } finally {
      db.close();
    }
    expect(await node.node.broker.call("mailbox.purge", { urn: erin })).toEqual({ messages: 0, dedup: 0, deviceTokens: 0, pendingPushes: 0, deadLetters: 0 });
    // A message routed after the purge is a new one (the same id included).
    expect((await http(node.url, "POST", "/send", { token: frankToken, body: envelope(erin, { messageId: "e2" }) })).status).toBe(202);
    await waitFor(async () => (await http(node.url, "GET", "/messages", { token: erinToken })).body.messages?.length === 1, "stored anew", 10_000);

    expect(await purgeCommand(node.node.broker, erin)).toMatch(new RegExp(`^${erin}: purged 1 message, 1 de-duplication record, 0 device tokens`));
    expect(await deadLettersCommand(node.node.broker)).toBe("no dead letters");
    expect(await replayCommand(node.node.broker, ["42"])).toBe("0 dead letters replayed onto the ingress bus (1 not found)");
    expect(await dropDeadLettersCommand(node.node.broker, ["42"])).toBe("0 dead letters dropped (1 not found)");
    expect(await replayCommand(node.node.broker, [])).toMatch(/^usage: replay/);
  });
});

describe("the quota's usage cache", () => {
  const bob = "urn:sm:user:bob-quota-unit" as Urn;

  it("keeps an admit counted when the store's read answers after the cache window (a cold Firestore client)", async () => {
    let clock = 0;
    let stored = 0;
    let reads = 0;
    const quota = createQuota({
      maxMessages: 3,
      maxBytes: 0,
      cacheMs: 500,
      now: () => clock,
      usage: async () => {
        reads++;
        // The first read is slow: the clock moves 2 s while it is under way.
        if (reads === 1) clock += 2_000;
        return { count: stored, bytes: 0 };
      },
    });
    // Three sends admitted back to back; none is stored yet when the next one is checked.
    await quota.admit(bob, 10);
    clock += 20;
    await quota.admit(bob, 10);
    clock += 60;
    await quota.admit(bob, 10);
    stored = 3;
    clock += 300;
    // All three landed; a fourth within the cache window is refused.
    await expect(quota.admit(bob, 10)).rejects.toMatchObject({ code: "MAILBOX_FULL" });
    expect(reads).toBe(1);
    // After the window the store's counters are read again: still full.
    clock += 600;
    await expect(quota.admit(bob, 10)).rejects.toMatchObject({ code: "MAILBOX_FULL" });
    expect(reads).toBe(2);
  });

  it("shares one read between admits that arrive while it is under way", async () => {
    const pending: Array<() => void> = [];
    let reads = 0;
    const quota = createQuota({
      maxMessages: 2,
      maxBytes: 0,
      usage: async () => {
        reads++;
        await new Promise<void>((resolve) => pending.push(resolve));
        return { count: 0, bytes: 0 };
      },
    });
    const admits = [quota.admit(bob, 1), quota.admit(bob, 1), quota.admit(bob, 1)].map((p) =>
      p.then(
        () => "admitted",
        (err: { code?: string }) => err.code,
      ),
    );
    await waitFor(async () => pending.length > 0, "the read under way", 1_000);
    for (const resolve of pending) resolve();
    expect(await Promise.all(admits)).toEqual(["admitted", "admitted", "MAILBOX_FULL"]);
    expect(reads).toBe(1);
  });
});
