/**
 * `npx tsx bench/micro/hot-path.ts [memory|sqlite] [payloadBytes]`: the routing path in one process,
 * without sockets or a load generator: WebSocket frames into the frame handler, ingress, bus, router,
 * mailbox and `deliver` to a fake transport, receivers acking in batches of 200. Prints the CPU µs
 * per routed message of the service's own code (median of 5 runs after a warm-up). `memory` uses the
 * reference bus and mailbox, so the difference to `sqlite` is the durable path's cost.
 * HOT_PATH_RATE=<msg/s>: an open loop at that rate instead (paced every millisecond), printing CPU µs
 * and commits per message and the p50/p99 from send to delivery: what the store's commit policy
 * costs at a given load, without the sockets and the generator of `npm run bench`. HOT_PATH_SYNC=normal
 * (no WAL sync) and HOT_PATH_SPACING_MS=<ms> (the least time between two WAL syncs) for experiments.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTokenVerifier } from "../../auth/jose-verifier.ts";
import { createMemoryIngressBus } from "../../backends/memory-ingress-bus.ts";
import { createMemoryMailbox } from "../../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../../backends/memory-push-queue.ts";
import { openSqliteDb } from "../../backends/sqlite-db.ts";
import { createSqliteIngressBus } from "../../backends/sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "../../backends/sqlite-mailbox.ts";
import { createSqlitePushQueue } from "../../backends/sqlite-push-queue.ts";
import type { Urn } from "../../core/urn.ts";
import { createSessionHost, type Session, type SessionTransport } from "../../gateway/sessions.ts";
import { createFrameHandler } from "../../gateway/socket-frames.ts";
import { createMetrics } from "../../metrics/registry.ts";
import { createQuota } from "../../lifecycle/quota.ts";
import { createIngress } from "../../routing/ingress.ts";
import { createRouter } from "../../routing/router.ts";
import { createLocalSignalBridge } from "../../routing/signals.ts";
import { createRouterService } from "../../services/router.service.ts";

const [store = "sqlite", payloadArg = "200"] = process.argv.slice(2);
const PAIRS = 64;
const WINDOW = 8;
const MESSAGES_PER_RUN = 12_000;
const MAX_ENVELOPE_BYTES = 65_536;
const dir = mkdtempSync(join(tmpdir(), "hot-path-"));
const db = openSqliteDb({
  dataDir: dir,
  sync: process.env.HOT_PATH_SYNC === "normal" ? "normal" : "full",
  syncSpacingMs: process.env.HOT_PATH_SPACING_MS ? Number(process.env.HOT_PATH_SPACING_MS) : undefined,
});
const retry = { maxAttempts: 5, retryBaseMs: 200 };
const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
const roles =
  store === "memory"
    ? { bus: createMemoryIngressBus(retry), mailbox: createMemoryMailbox({ dedupTtlMs: 604_800_000 }), pushQueue: createMemoryPushQueue() }
    : { bus: createSqliteIngressBus(db, retry), mailbox: createSqliteMailbox(db, { dedupTtlMs: 604_800_000 }), pushQueue: createSqlitePushQueue(db) };
const metrics = createMetrics();
const quiet = { warn() {}, debug() {}, info() {}, error() {} };
const sessions = createSessionHost({
  instanceId: "hot-path",
  presence,
  metrics,
  maxBufferBytes: 1 << 30,
  authTimeoutMs: 10_000,
  heartbeatMs: 30_000,
  drainTimeoutMs: 1_000,
  log: quiet,
});
// The quota the node checks by default (10,000 messages / 64 MiB per recipient): one usage read per send, cached 500 ms.
const quota = createQuota({ usage: (urn) => roles.mailbox.usage(urn), maxMessages: 10_000, maxBytes: 64 * 1024 * 1024 });
const ingress = createIngress({ bus: roles.bus, maxEnvelopeBytes: MAX_ENVELOPE_BYTES, metrics, quota });
const route = createRouter({ mailbox: roles.mailbox, presence, signals: createLocalSignalBridge(sessions), pushQueue: roles.pushQueue });
const router = createRouterService({ bus: roles.bus, busName: store, route, metrics, maxInFlight: 512, drainTimeoutMs: 1_000 });
await (router.schema.started as (this: { logger: typeof quiet }) => Promise<void>).call({ logger: quiet });
const onFrame = createFrameHandler({
  ingress,
  mailbox: roles.mailbox,
  maxEnvelopeBytes: MAX_ENVELOPE_BYTES,
  verifier: createTokenVerifier({ secret: "hot-path-bench-secret" }),
});

const payload = "Z".repeat(Number(payloadArg));
let sent = 0;
let delivered = 0;
const RATE = Number(process.env.HOT_PATH_RATE ?? 0);
const sentAt = new Map<string, number>();
/** Open loop: message `first + i` is due at `pacedFrom + i / RATE` s; latency counts from then (a stalled loop shows). */
let pacedFrom = 0;
let first = 0;
const latencies: number[] = [];
let cap = 0;
let done: () => void = () => {};
const senders: Session[] = [];
const receivers: Session[] = [];
const acks: string[][] = Array.from({ length: PAIRS }, () => []);
const idle = { bufferedAmount: () => 0, ping() {}, close() {} };

function sendNext(pair: number): void {
  if (RATE > 0) sentAt.set(`m.${sent}`, pacedFrom + ((sent - first) * 1000) / RATE);
  const frame = `{"type":"send","ref":"s","envelope":{"recipientId":"urn:sm:user:r${pair}","messageId":"m.${sent++}","encryptedData":"${payload}"}}`;
  onFrame(senders[pair], frame);
}

function receiver(pair: number): SessionTransport {
  return {
    ...idle,
    send(text) {
      if (!text.startsWith('{"type":"message"')) return true;
      const at = text.indexOf('"id":"') + 6;
      const id = text.slice(at, text.indexOf('"', at));
      acks[pair].push(id);
      const t0 = sentAt.get(id);
      if (t0 !== undefined) {
        latencies.push(performance.now() - t0);
        sentAt.delete(id);
      }
      if (acks[pair].length >= 200) {
        onFrame(receivers[pair], JSON.stringify({ type: "ack", messageIds: acks[pair] }));
        acks[pair] = [];
      }
      delivered++;
      if (RATE > 0) {
        if (delivered === cap) done();
      } else if (sent < cap) sendNext(pair);
      else if (delivered === cap) done();
      return true;
    },
  };
}

for (let p = 0; p < PAIRS; p++) {
  senders.push(sessions.open({ ...idle, send: () => true }, "ws", "poke", { identity: `urn:sm:user:s${p}` as Urn, expiresAt: undefined }));
  receivers.push(sessions.open(receiver(p), "ws", "push", { identity: `urn:sm:user:r${p}` as Urn, expiresAt: undefined }));
}
// Sessions go online once presence is written (a promise away).
await new Promise((r) => setTimeout(r, 200));

/** Routes `n` messages closed-loop (WINDOW per pair); resolves CPU µs per message. */
async function run(n: number): Promise<number> {
  cap = sent + n;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const before = delivered;
  const commits0 = db.commits;
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let w = 0; w < WINDOW; w++) for (let p = 0; p < PAIRS && sent < cap; p++) sendNext(p);
  await finished;
  const cpu = process.cpuUsage(cpu0);
  const routed = delivered - before;
  if (process.env.HOT_PATH_VERBOSE)
    console.log(
      `  ${((routed * 1000) / (performance.now() - wall0)).toFixed(0)} msg/s wall, ${((db.commits - commits0) / routed).toFixed(3)} commits/msg, user ${(cpu.user / routed).toFixed(1)} sys ${(cpu.system / routed).toFixed(1)} µs/msg`,
    );
  return (cpu.user + cpu.system) / routed;
}

/** Open loop: `RATE` msg/s for `seconds`, paced per millisecond; prints CPU, commits and latency per message. */
async function paced(seconds: number): Promise<void> {
  const n = RATE * seconds;
  cap = sent + n;
  latencies.length = 0;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const before = delivered;
  const commits0 = db.commits;
  const syncs0 = db.syncs;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  pacedFrom = t0;
  first = sent;
  let pair = 0;
  const timer = setInterval(() => {
    const due = Math.min(cap, Math.floor(((performance.now() - t0) * RATE) / 1000) + (cap - n));
    while (sent < due) sendNext(pair++ % PAIRS);
  }, 1);
  await finished;
  clearInterval(timer);
  const cpu = process.cpuUsage(cpu0);
  const routed = delivered - before;
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))].toFixed(2);
  console.log(
    `${store} at ${RATE} msg/s: ${((cpu.user + cpu.system) / routed).toFixed(0)} µs CPU/msg (sys ${(cpu.system / routed).toFixed(0)}), ` +
      `${((db.commits - commits0) / routed).toFixed(2)} commits/msg, ${((db.syncs - syncs0) / routed).toFixed(2)} syncs/msg, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`,
  );
}

if (RATE > 0) {
  await paced(2);
  for (let i = 0; i < 3; i++) await paced(4);
  await router.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

await run(MESSAGES_PER_RUN);
const runs: number[] = [];
for (let i = 0; i < 5; i++) runs.push(await run(MESSAGES_PER_RUN));
const sorted = [...runs].sort((a, b) => a - b);
console.log(`${store}, ${payload.length} B payload: ${sorted[2].toFixed(1)} µs CPU per message (median; runs ${runs.map((r) => r.toFixed(1)).join(", ")})`);
await router.stop();
db.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
