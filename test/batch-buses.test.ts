import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { connect } from "nats";
import { PubSub } from "@google-cloud/pubsub";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BusRecord, IngressBus } from "../backends/ingress-bus.ts";
import { createMemoryIngressBus } from "../backends/memory-ingress-bus.ts";
import { openNatsIngressBus } from "../backends/nats-ingress-bus.ts";
import { openPubSubIngressBus } from "../backends/pubsub-ingress-bus.ts";
import { openSqliteDb } from "../backends/sqlite-db.ts";
import { createSqliteIngressBus } from "../backends/sqlite-ingress-bus.ts";
import type { Urn } from "../core/urn.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createIngressGate } from "../limits/ingress-gate.ts";
import { createSendRateLimiter } from "../limits/rate.ts";
import { createIngress } from "../routing/ingress.ts";
import { waitFor } from "./contracts/fixture.ts";
import { startPubSubEmulator, type Emulator } from "./helpers/emulators.ts";
import { envelope } from "./helpers/clients.ts";

/**
 * The ingress's batch (`acceptBatch`, behind POST /send/batch) on every bus: each accepted item is
 * on the bus (consumed back) once the batch resolved, refused items are not, order is kept.
 */

const NATS_URL = process.env.ROUTING_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const RETRY = { maxAttempts: 5, retryBaseMs: 50 };
const SENDER = "urn:sm:user:alice" as Urn;

async function batchThrough(bus: IngressBus): Promise<void> {
  const ingress = createIngress({ bus, maxEnvelopeBytes: 65536, metrics: createMetrics() });
  const items: unknown[] = Array.from({ length: 40 }, (_, i) =>
    i % 8 === 3 ? { recipientId: "urn:sm:user:x" } : envelope(`urn:sm:user:r${i}`, { messageId: `b-${i}` }),
  );
  const results = await ingress.acceptBatch(items, SENDER, "http");
  expect(results.map((r) => ("messageId" in r ? r.messageId : r.error.code))).toEqual(items.map((_, i) => (i % 8 === 3 ? "INVALID_ENVELOPE" : `b-${i}`)));
  const got = new Map<string, BusRecord>();
  const sub = bus.consume((d) => {
    got.set(d.record.messageId, d.record);
    void d.ack();
  });
  try {
    await waitFor(() => [...got.keys()].filter((k) => k.startsWith("b-")).length >= 35, "35 records consumed", 20_000);
  } finally {
    await sub.close();
  }
  expect([...got.keys()].filter((k) => k.startsWith("b-")).sort()).toEqual(results.flatMap((r) => ("messageId" in r ? [r.messageId] : [])).sort());
  expect(got.get("b-0")?.recipientId).toBe("urn:sm:user:r0");
  expect(got.get("b-0")?.path).toBe("http");
}

describe("acceptBatch on the embedded SQLite bus", () => {
  it("publishes the whole batch in one transaction (one fsync), refused items not at all", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "routing-batch-"));
    const db = openSqliteDb({ dataDir: dir, sync: "full" });
    const bus = createSqliteIngressBus(db, RETRY);
    try {
      const ingress = createIngress({ bus, maxEnvelopeBytes: 65536, metrics: createMetrics() });
      const before = db.commits;
      const results = await ingress.acceptBatch(
        Array.from({ length: 100 }, (_, i) => (i === 50 ? "nope" : envelope(`urn:sm:user:r${i}`))),
        SENDER,
        "http",
      );
      expect(results.filter((r) => "messageId" in r)).toHaveLength(99);
      expect(db.commits - before).toBe(1);
      // Still one transaction when admission (rate, quota, ingress room) resolves item by item at
      // different times, as a Redis rate limiter or a quota read would: publishing waits for all.
      const gate = createIngressGate({ maxPending: 10_000, backlog: async () => 0 });
      const rate = createSendRateLimiter({ ratePerSecond: 1000, burst: 1000, keyPrefix: "t" });
      const slowQuota = { admit: () => new Promise<void>((resolve) => setTimeout(resolve, Math.random() * 30)) };
      const limited = createIngress({ bus, maxEnvelopeBytes: 65536, metrics: createMetrics(), limits: { rate, gate }, quota: slowQuota });
      const again = db.commits;
      const spread = await limited.acceptBatch(
        Array.from({ length: 50 }, (_, i) => envelope(`urn:sm:user:q${i}`)),
        SENDER,
        "http",
      );
      expect(spread.filter((r) => "messageId" in r)).toHaveLength(50);
      expect(db.commits - again).toBe(1);
      await batchThrough(bus);
    } finally {
      await bus.close();
      db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("acceptBatch on the memory bus", () => {
  it("every accepted item is on the bus, in order of results", async () => {
    const bus = createMemoryIngressBus(RETRY);
    try {
      await batchThrough(bus);
    } finally {
      await bus.close();
    }
  });
});

describe("acceptBatch on NATS JetStream", () => {
  it("the batch's publishes are pipelined and awaited together; every accepted item is in the stream", async () => {
    const id = randomUUID().replace(/-/g, "").slice(0, 12);
    const stream = `RT_BATCH_${id}`;
    const bus = await openNatsIngressBus({ ...RETRY, servers: NATS_URL, stream, consumer: "router", subjectPrefix: `rtb.${id}` });
    try {
      await batchThrough(bus);
    } finally {
      await bus.close();
      const nc = await connect({ servers: NATS_URL });
      const jsm = await nc.jetstreamManager();
      for (const s of [stream, `${stream}_DEAD`]) await jsm.streams.delete(s).catch(() => false);
      await nc.close();
    }
  });
});

describe("acceptBatch on the Pub/Sub emulator", () => {
  let emulator: Emulator | undefined;
  beforeAll(async () => {
    emulator = await startPubSubEmulator();
  }, 90_000);
  afterAll(async () => {
    await emulator?.stop();
  });

  it("one client publish batch; every accepted item reaches the subscription", async () => {
    const host = emulator!.host;
    const id = randomUUID().slice(0, 8);
    const where = { projectId: "routing-test", emulatorHost: host, topic: `rtb-${id}-in`, subscription: `rtb-${id}-router` };
    const bus = await openPubSubIngressBus({ ...where, ...RETRY });
    try {
      await batchThrough(bus);
    } finally {
      await bus.close();
      const pubsub = new PubSub({ projectId: where.projectId, apiEndpoint: host, emulatorMode: true, universeDomain: "googleapis.com" });
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
      await pubsub.close();
    }
  }, 60_000);
});
