/**
 * `npx tsx bench/push.ts`: push throughput against the local FCM and APNs stand-ins of
 * test/helpers/push-fakes.ts. Per platform and concurrency: BENCH_PUSHES recipients, each with one
 * device token and one unread message, and as many pushes queued in the embedded SQLite store; then
 * the push service (real actor, dispatcher, firebase-admin / node-apn clients) drains the queue.
 * pushes/s = pushes / time from the service start until the stand-in has accepted every push and
 * the queue is empty.
 *
 * BENCH_PUSHES (2000), BENCH_PUSH_CONCURRENCY (comma list, "8,64"), BENCH_PUSH_LATENCY_MS (0: the
 * stand-ins answer at once; set e.g. 100 for a provider's round trip). The stand-ins share the
 * process (and verify every JWT): figures are relative, not a provider's capacity.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import type { PushPlatform } from "../backends/device-store.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { openSqliteDb } from "../backends/sqlite-db.ts";
import { createSqliteDeviceStore } from "../backends/sqlite-device-store.ts";
import { createSqliteMailbox } from "../backends/sqlite-mailbox.ts";
import { createSqlitePushQueue } from "../backends/sqlite-push-queue.ts";
import type { Urn } from "../core/urn.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createApnsSender } from "../push/apns-sender.ts";
import { createFcmSender } from "../push/fcm-sender.ts";
import { createPushService } from "../services/push.service.ts";
import { makeCredentials, makeTlsFixture, startFakeApns, startFakeFcm, type CapturedRequest } from "../test/helpers/push-fakes.ts";

const PUSHES = Number(process.env.BENCH_PUSHES ?? 2000);
const CONCURRENCY = (process.env.BENCH_PUSH_CONCURRENCY ?? "8,64").split(",").map(Number);
const LATENCY_MS = Number(process.env.BENCH_PUSH_LATENCY_MS ?? 0);

const tls = makeTlsFixture();
const creds = makeCredentials(tls.dir);
const fcm = await startFakeFcm(tls, creds);
const apns = await startFakeApns(tls, creds);
fcm.latency(LATENCY_MS);
apns.latency(LATENCY_MS);

async function run(platform: PushPlatform, concurrency: number) {
  const dir = mkdtempSync(join(tmpdir(), "routing-bench-push-"));
  const db = openSqliteDb({ dataDir: dir, sync: "normal" });
  const queue = createSqlitePushQueue(db);
  const mailbox = createSqliteMailbox(db, { dedupTtlMs: 3_600_000 });
  const devices = createSqliteDeviceStore(db);
  const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
  const now = Date.now();
  await Promise.all(
    Array.from({ length: PUSHES }, async (_, i) => {
      const to = `urn:sm:user:bench-${i}` as Urn;
      await devices.register(to, platform === "apns" ? `a${i.toString(16).padStart(8, "0")}` : `fcm-${i}`, platform);
      await mailbox.store({ recipientId: to, messageId: `m${i}`, priority: 1, envelope: "{}", queuedAt: now });
      await queue.enqueue({ recipientId: to, messageId: `m${i}`, priority: 1, dueAt: now });
    }),
  );
  const sender =
    platform === "fcm"
      ? createFcmSender({ serviceAccountFile: creds.serviceAccountFile, endpoint: fcm.url, ca: tls.ca, maxSockets: concurrency })
      : createApnsSender({
          keyFile: creds.apnsKeyFile,
          keyId: creds.apnsKeyId,
          teamId: creds.apnsTeamId,
          topic: creds.apnsTopic,
          production: false,
          host: "127.0.0.1",
          port: apns.port,
          ca: tls.ca,
        });
  const broker = new ServiceBroker({ logger: false });
  broker.createService(
    createPushService({
      queue,
      presence,
      mailbox,
      devices,
      senders: [sender],
      metrics: createMetrics(),
      collapseMs: 60_000,
      maxAttempts: 5,
      retryBaseMs: 1000,
      concurrency,
      drainTimeoutMs: 5000,
    }),
  );
  const accepted = (): number => (platform === "fcm" ? fcm.sends() : apns.requests).filter((r: CapturedRequest) => r.status === 200).length;
  const started = performance.now();
  await broker.start();
  while (accepted() < PUSHES || (await queue.count()) > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const seconds = (performance.now() - started) / 1000;
  await broker.stop();
  await Promise.all([queue.close(), mailbox.close(), devices.close(), presence.close()]);
  db.close();
  rmSync(dir, { recursive: true, force: true });
  fcm.reset();
  apns.reset();
  fcm.latency(LATENCY_MS);
  apns.latency(LATENCY_MS);
  return { platform, concurrency, pushes: PUSHES, seconds: +seconds.toFixed(2), pushesPerSec: Math.round(PUSHES / seconds) };
}

const results = [];
for (const concurrency of CONCURRENCY) for (const platform of ["fcm", "apns"] as const) results.push(await run(platform, concurrency));
console.log(`push throughput to local stand-ins, ${PUSHES} queued pushes, stand-in latency ${LATENCY_MS} ms`);
console.log("| platform | ROUTING_PUSH_CONCURRENCY | s | pushes/s |\n|---|---|---|---|");
for (const r of results) console.log(`| ${r.platform} | ${r.concurrency} | ${r.seconds} | ${r.pushesPerSec} |`);
await fcm.close();
await apns.close();
rmSync(tls.dir, { recursive: true, force: true });
