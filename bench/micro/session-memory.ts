/**
 * `node --expose-gc --import tsx bench/micro/session-memory.ts [sessions]`: heap retained per
 * WebSocket session (after GC), and where it goes. Explains the service's RSS per idle connection
 * in README "Performance" (RSS adds the engine's per-socket state: uWS ~0.4 KiB, and the gateway's).
 *
 * - `sessions.open()`: everything one online session retains: its machine snapshot, its token
 *   expiry on the host's timer queue, the host's bookkeeping, and its entry in the memory presence
 *   store (the default `presence: memory`; with redis that entry lives in Redis). The CPU time of
 *   `open()` too.
 * - the parts, measured on their own: the presence entry; one online snapshot of the provided
 *   session machine as the host's runner keeps it (gateway/session-runner.ts), and within it its
 *   token-expiry delay; the host's bookkeeping is the rest (session object, its id, map entries).
 * - for comparison, what the host kept per session before (issue 16): one started, online live
 *   actor of the same machine (and, within it, its two Node timers and its own actor system).
 * - once per host, not per session: the `sessionMachine.provide()` of the host's effects.
 */
import { createActor, type AnyActorRef } from "xstate";
import { sessionMachine } from "../../actors/session/machine.ts";
import { createMemoryPresenceStore } from "../../backends/memory-presence-store.ts";
import type { Urn } from "../../core/urn.ts";
import { createSessionRunner, type RunnableSession } from "../../gateway/session-runner.ts";
import { createSessionHost } from "../../gateway/sessions.ts";
import { createMetrics } from "../../metrics/registry.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const N = Number(process.argv[2] ?? 5_000);
const WARMUP = 100;
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const perItem = (before: number): number => (heap() - before) / N;
const bytes = (b: number): string => `${b.toFixed(0)} B`;
const settle = () => new Promise((r) => setTimeout(r, 200));
/** Everything measured stays alive until the end, so no phase frees what an earlier one measured. */
const kept: unknown[] = [];

const timeouts = { authTimeoutMs: 10_000, heartbeatMs: 30_000, drainTimeoutMs: 5_000 };
const host = createSessionHost({
  instanceId: "session-memory",
  presence: createMemoryPresenceStore({ ttlMs: 30_000 }),
  metrics: createMetrics(),
  maxBufferBytes: 1 << 20,
  ...timeouts,
  log: { warn() {} },
});
const transport = { send: () => true, bufferedAmount: () => 0, ping() {}, close() {} };
const principal = (i: number) => ({ identity: `urn:sm:user:u${i}` as Urn, expiresAt: Date.now() + 3_600_000 });
// First sessions pay one-time costs (code, metric label sets); they stay open and are not counted.
for (let i = 0; i < WARMUP; i++) host.open(transport, "ws", "push", principal(-1 - i));
await settle();

let before = heap();
const t0 = performance.now();
for (let i = 0; i < N; i++) host.open(transport, "ws", "push", principal(i));
const openUs = ((performance.now() - t0) * 1000) / N;
await settle();
const open = perItem(before);
const online = host.sessions().filter((s) => s.isOnline()).length;

// The presence entry alone (memory store), for as many identities; the identity and session id
// strings are the session's (counted in the host's part), so they exist before the measurement.
const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
const keys = Array.from({ length: N }, (_, i) => ({ urn: `urn:sm:user:p${i}` as Urn, sessionId: `${i}`.padStart(36, "0") }));
before = heap();
for (const { urn, sessionId } of keys) await presence.add(urn, { sessionId, instanceId: "session-memory", protocol: "ws", connectedAt: Date.now() });
const presenceEntry = perItem(before);
kept.push(presence, keys);

// One started, online actor of a provided machine, created as open() creates it.
const provided = sessionMachine.provide({ actions: { goOnline: () => {} } });
const input = (i: number) => ({ sessionId: String(i), protocol: "ws" as const, ...timeouts });
const goOnline = <A extends { send: AnyActorRef["send"] }>(actor: A): A => {
  actor.send({ type: "session.auth.accepted", identity: "urn:sm:user:x" as Urn, tokenTtlMs: 3_600_000 });
  actor.send({ type: "session.presence.registered" });
  return actor;
};
const measureActors = (options: (i: number) => Parameters<typeof createActor<typeof provided>>[1]): number => {
  const start = heap();
  const actors = Array.from({ length: N }, (_, i) => goOnline(createActor(provided, options(i)).start()));
  kept.push(actors);
  if (!actors.every((a) => a.getSnapshot().matches("online"))) throw new Error("actors not online");
  return perItem(start);
};
// One online snapshot as the host's runner keeps it (with and without a token expiry).
const runner = createSessionRunner(provided, (err) => {
  throw err;
});
const measureSnapshots = (tokenTtlMs: number | undefined): number => {
  const start = heap();
  const sessions = Array.from({ length: N }, (_, i) => {
    const session = { delays: undefined, next() {} } as unknown as RunnableSession;
    runner.start(session, input(i));
    goOnline({ send: (event: Parameters<AnyActorRef["send"]>[0]) => runner.send(session, { ...event, tokenTtlMs } as never) });
    return session;
  });
  kept.push(sessions);
  if (!sessions.every((s) => s.snapshot.value === "online")) throw new Error("snapshots not online");
  return perItem(start);
};
const snapshot = measureSnapshots(3_600_000);
const snapshotNoExpiry = measureSnapshots(undefined);
const actor = measureActors((i) => ({ input: input(i) }));
// The same actor with a clock that schedules nothing: the difference is its two Node timers
// (heartbeat, token expiry) and their callbacks; XState's own record of them remains.
const noTimers = { setTimeout: () => 0, clearTimeout: () => {} };
const actorNoTimers = measureActors((i) => ({ clock: noTimers, input: input(i) }));
// The same actor in one shared actor system (`parent` is how XState creates children): the
// difference is the actor system every root actor gets. Not used by the host: XState 5.33's
// scheduler scans every delayed event of the system when one actor stops, so closing a session
// would cost O(all sessions): measured 1.7 ms per close with 5k sessions, 13 ms with 20k, 66 ms
// with 50k (0.1-0.25 ms each with their own systems).
const root = createActor(provided, { input: input(-1) }).start();
const actorShared = measureActors((i) => ({ parent: root as AnyActorRef, input: input(i) }));

// Once per host: the host's provide() (it clones the machine).
before = heap();
kept.push(Array.from({ length: N }, () => sessionMachine.provide({ actions: { goOnline: () => {} } })));
const provide = perItem(before);

console.log(`sessions.open(): ${bytes(open)} retained and ${openUs.toFixed(0)} µs of CPU per session (${online} of ${N + WARMUP} online)`);
console.log(`  presence entry (memory store):        ${bytes(presenceEntry)}`);
console.log(`  session snapshot, online:             ${bytes(snapshot)}`);
console.log(`    of which its token-expiry delay:    ${bytes(snapshot - snapshotNoExpiry)} (one entry on the host's timer queue)`);
console.log(`  host bookkeeping (the rest):          ${bytes(open - presenceEntry - snapshot)}`);
console.log(`(before issue 16: a live session actor, online: ${bytes(actor)}`);
console.log(`    of which its 2 Node timers:         ${bytes(actor - actorNoTimers)}`);
console.log(`    of which its own actor system:      ${bytes(actor - actorShared)} (against one system shared by all))`);
console.log(`sessionMachine.provide(): ${bytes(provide)}, once per host (not per session)`);
process.exit(0);
