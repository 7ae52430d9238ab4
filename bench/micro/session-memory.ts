/**
 * `node --expose-gc --import tsx bench/micro/session-memory.ts [sessions]`: heap retained per
 * WebSocket session by the session host (after GC), and by its parts: one `sessionMachine.provide()`
 * (done per connection by `open()`) and one started actor of the shared machine, online. Also the
 * CPU time of `open()`. Explains the service's RSS per idle connection in README "Performance".
 */
import { createActor } from "xstate";
import { sessionMachine } from "../../actors/session/machine.ts";
import { createMemoryPresenceStore } from "../../backends/memory-presence-store.ts";
import type { Urn } from "../../core/urn.ts";
import { createSessionHost } from "../../gateway/sessions.ts";
import { createMetrics } from "../../metrics/registry.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const N = Number(process.argv[2] ?? 5_000);
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const perItem = (before: number) => ((heap() - before) / N).toFixed(0);
const settle = () => new Promise((r) => setTimeout(r, 200));

const host = createSessionHost({
  instanceId: "session-memory",
  presence: createMemoryPresenceStore({ ttlMs: 30_000 }),
  metrics: createMetrics(),
  maxBufferBytes: 1 << 20,
  authTimeoutMs: 10_000,
  heartbeatMs: 30_000,
  drainTimeoutMs: 5_000,
  log: { warn() {} },
});
const transport = { send: () => true, bufferedAmount: () => 0, ping() {}, close() {} };
await settle();

let before = heap();
const t0 = performance.now();
for (let i = 0; i < N; i++) host.open(transport, "ws", "push", { identity: `urn:sm:user:u${i}` as Urn, expiresAt: Date.now() + 3_600_000 });
const openUs = ((performance.now() - t0) * 1000) / N;
await settle();
console.log(`sessions.open(): ${perItem(before)} B retained and ${openUs.toFixed(0)} µs of CPU per session (${host.sessions().filter((s) => s.isOnline()).length} online)`);

before = heap();
const provided = Array.from({ length: N }, () => sessionMachine.provide({ actions: { goOnline: () => {} } }));
console.log(`sessionMachine.provide(): ${perItem(before)} B each`);

before = heap();
const actors = Array.from({ length: N }, (_, i) =>
  createActor(sessionMachine, { input: { sessionId: String(i), protocol: "ws", authTimeoutMs: 10_000, heartbeatMs: 30_000, drainTimeoutMs: 5_000 } }).start(),
);
for (const a of actors) a.send({ type: "session.auth.accepted", identity: "urn:sm:user:x" as Urn, tokenTtlMs: 3_600_000 });
for (const a of actors) a.send({ type: "session.presence.registered" });
console.log(`actor of the shared machine, online: ${perItem(before)} B each (${provided.length} machines and ${actors.length} actors kept alive)`);
process.exit(0);
