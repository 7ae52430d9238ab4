import { describe, expect, it } from "vitest";
import { sessionMachine, type SessionInput } from "../actors/session/machine.ts";
import { CLOSE } from "../core/close-codes.ts";
import type { Urn } from "../core/urn.ts";
import { createSessionRunner, type RunnableSession, type SessionSnapshot } from "../gateway/session-runner.ts";

const bob = "urn:sm:user:bob" as Urn;
const input = (sessionId: string, over: Partial<SessionInput> = {}): SessionInput => ({
  sessionId,
  protocol: "ws",
  authTimeoutMs: 10_000,
  heartbeatMs: 30_000,
  drainTimeoutMs: 5_000,
  ...over,
});

/** A runner over the session machine whose effects are recorded; `flushAtOnce` answers awaitFlush synchronously. */
function setup() {
  const effects: string[] = [];
  const sessions = new Map<string, TestSession>();
  const machine = sessionMachine.provide({
    actions: {
      authenticate: ({ context }) => void effects.push(`authenticate:${context.sessionId}`),
      registerPresence: (_, { identity }) => void effects.push(`register:${identity}`),
      goOnline: () => void effects.push("online"),
      sendPing: () => void effects.push("ping"),
      awaitFlush: ({ context }) => {
        effects.push("awaitFlush");
        runner.send(sessions.get(context.sessionId) as TestSession, { type: "session.flushed" });
      },
      closeSocket: (_, { code }) => void effects.push(`close:${code}`),
      unregisterPresence: () => void effects.push("unregister"),
    },
  });
  const errors: unknown[] = [];
  const runner = createSessionRunner(machine, (err) => errors.push(err));
  class TestSession implements RunnableSession {
    snapshot!: SessionSnapshot;
    delays: RunnableSession["delays"] = undefined;
    readonly seen: string[] = [];
    done: Promise<void>;
    #resolve: () => void = () => {};
    constructor() {
      this.done = new Promise((resolve) => (this.#resolve = resolve));
    }
    next(snapshot: SessionSnapshot): void {
      this.seen.push(snapshot.status === "done" ? "done" : String(snapshot.value));
      if (snapshot.status === "done") this.#resolve();
    }
  }
  const start = (id: string, over: Partial<SessionInput> = {}) => {
    const session = new TestSession();
    sessions.set(id, session);
    runner.start(session, input(id, over));
    return session;
  };
  const online = (session: TestSession, tokenTtlMs?: number) => {
    runner.send(session, { type: "session.auth.verified", identity: bob, tokenTtlMs });
    runner.send(session, { type: "session.transport.attached" });
    runner.send(session, { type: "session.presence.registered" });
  };
  return { runner, effects, errors, start, online };
}

describe("session runner (the session machine as snapshots, no actor per session)", () => {
  it("runs the machine's transitions and effects: connecting -> authenticated -> online, one delay while online", () => {
    const { runner, effects, start, online } = setup();
    const session = start("s1");
    expect(session.snapshot.value).toBe("connecting");
    expect(effects).toEqual(["authenticate:s1"]);
    expect(runner.pendingDelays()).toBe(1); // the auth timeout
    online(session, 60_000);
    expect(session.snapshot.matches("online")).toBe(true);
    expect(session.snapshot.context.identity).toBe(bob);
    expect(effects).toEqual(["authenticate:s1", `register:${bob}`, "online"]);
    expect(session.seen).toEqual(["connecting", "connecting", "authenticated", "online"]);
    expect(runner.pendingDelays()).toBe(1); // the token expiry (the auth timeouts were cancelled)
    runner.send(session, { type: "session.heartbeat" });
    runner.send(session, { type: "session.heartbeat" });
    runner.send(session, { type: "session.heartbeat" });
    expect(effects.filter((e) => e === "ping")).toHaveLength(2);
    expect(session.snapshot.status).toBe("done");
    expect(effects.slice(-2)).toEqual(["unregister", `close:${CLOSE.HEARTBEAT_TIMEOUT}`]);
    expect(runner.pendingDelays()).toBe(0);
  });

  it("an effect's immediate answer is processed after the current event (drain, flushed at once)", () => {
    const { effects, start, online, runner } = setup();
    const session = start("s1");
    online(session);
    runner.send(session, { type: "session.drain" });
    expect(session.seen.slice(-2)).toEqual(["draining", "done"]);
    expect(effects.slice(-3)).toEqual(["awaitFlush", "unregister", `close:${CLOSE.GOING_AWAY}`]);
    runner.send(session, { type: "session.heartbeat" }); // a done session ignores events
    expect(session.seen.at(-1)).toBe("done");
    expect(effects.filter((e) => e === "ping")).toHaveLength(0);
  });

  it("delayed events fire from the shared timer queue: the auth timeout closes a session never verified", async () => {
    const { effects, start, runner } = setup();
    const late = start("late", { authTimeoutMs: 1 });
    const verified = start("verified", { authTimeoutMs: 60_000 });
    runner.send(verified, { type: "session.auth.verified", identity: bob });
    await late.done;
    expect(late.snapshot.context.closeCode).toBe(CLOSE.AUTH_TIMEOUT);
    expect(effects).toContain(`close:${CLOSE.AUTH_TIMEOUT}`);
    expect(verified.snapshot.value).toBe("connecting");
    runner.stop();
    expect(runner.pendingDelays()).toBe(0);
  });

  it("sessions in the same state share one copy of the state's parts, and the snapshot still answers", () => {
    const { start, online } = setup();
    const [a, b] = [start("a"), start("b")];
    online(a);
    online(b);
    expect(a.snapshot._nodes).toBe(b.snapshot._nodes);
    expect(a.snapshot.tags).toBe(b.snapshot.tags);
    expect(a.snapshot.hasTag("x")).toBe(false);
    expect(a.snapshot.can({ type: "session.pong" })).toBe(true);
    expect(a.snapshot.context).not.toBe(b.snapshot.context);
  });

  it("an entry effect that answers at once is queued behind the start: the session is told its states in order and keeps no timer", () => {
    const seen: string[] = [];
    const session: RunnableSession = {
      snapshot: undefined as unknown as SessionSnapshot,
      delays: undefined,
      next: (snapshot) => void seen.push(snapshot.status === "done" ? "done" : String(snapshot.value)),
    };
    const machine = sessionMachine.provide({
      actions: { authenticate: () => runner.send(session, { type: "session.auth.rejected", error: new Error("bad token") }) },
    });
    const runner = createSessionRunner(machine, () => {});
    runner.start(session, input("sync"));
    expect(seen).toEqual(["connecting", "done"]);
    expect(runner.pendingDelays()).toBe(0);
  });

  it("an effect that throws is reported; the step's other actions still run and the session hears of its new state", () => {
    const seen: string[] = [];
    const effects: string[] = [];
    const errors: unknown[] = [];
    const machine = sessionMachine.provide({
      actions: {
        authenticate: () => {},
        registerPresence: () => {
          throw new Error("presence store down");
        },
        closeSocket: (_, { code }) => void effects.push(`close:${code}`),
        unregisterPresence: () => {
          throw new Error("presence store down");
        },
      },
    });
    const runner = createSessionRunner(machine, (err) => errors.push(err));
    const session: RunnableSession = {
      snapshot: undefined as unknown as SessionSnapshot,
      delays: undefined,
      next: (snapshot) => void seen.push(snapshot.status === "done" ? "done" : String(snapshot.value)),
    };
    runner.start(session, input("throws", { authTimeoutMs: 50 }));
    runner.send(session, { type: "session.auth.verified", identity: bob });
    runner.send(session, { type: "session.transport.attached" });
    expect(errors).toHaveLength(1);
    expect(seen.at(-1)).toBe("authenticated");
    // Its timers were still armed: the presence timeout is pending, not lost with the throw.
    expect(runner.pendingDelays()).toBeGreaterThan(0);
    runner.send(session, { type: "session.socket.closed", code: CLOSE.NORMAL });
    expect(seen.at(-1)).toBe("done");
    expect(runner.pendingDelays()).toBe(0);
    runner.stop();
  });
});
