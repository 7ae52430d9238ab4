import { describe, expect, it } from "vitest";
import { createActor, SimulatedClock } from "xstate";
import { sessionMachine } from "../actors/session/machine.ts";
import { routerMachine } from "../actors/router/machine.ts";
import { CLOSE } from "../core/close-codes.ts";
import type { Urn } from "../core/urn.ts";

const bob = "urn:sm:user:bob" as Urn;

function startSession(overrides: Partial<{ authTimeoutMs: number; heartbeatMs: number; drainTimeoutMs: number }> = {}) {
  const clock = new SimulatedClock();
  const effects: string[] = [];
  const machine = sessionMachine.provide({
    actions: {
      registerPresence: (_, params) => effects.push(`register:${params.identity}`),
      unregisterPresence: () => effects.push("unregister"),
      goOnline: () => effects.push("online"),
      sendPing: () => effects.push("ping"),
      awaitFlush: () => effects.push("awaitFlush"),
      closeSocket: (_, params) => effects.push(`close:${params.code}`),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: { sessionId: "s1", protocol: "ws", authTimeoutMs: 1000, heartbeatMs: 30_000, drainTimeoutMs: 5000, ...overrides },
  }).start();
  const online = () => {
    actor.send({ type: "session.auth.accepted", identity: bob });
    actor.send({ type: "session.presence.registered" });
  };
  return { clock, effects, actor, online };
}

describe("session machine", () => {
  it("goes connecting -> authenticated -> online and registers presence once", () => {
    const { actor, effects, online } = startSession();
    expect(actor.getSnapshot().value).toBe("connecting");
    online();
    expect(actor.getSnapshot().matches("online")).toBe(true);
    expect(effects).toEqual([`register:${bob}`, "online"]);
    expect(actor.getSnapshot().context.identity).toBe(bob);
  });

  it("closes with AUTH_TIMEOUT when never authenticated, without touching presence", () => {
    const { actor, effects, clock } = startSession();
    clock.increment(999);
    expect(actor.getSnapshot().value).toBe("connecting");
    clock.increment(1);
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual([`close:${CLOSE.AUTH_TIMEOUT}`]);
  });

  it("closes with BACKEND_UNAVAILABLE when presence cannot be written", () => {
    const { actor, effects } = startSession();
    actor.send({ type: "session.auth.accepted", identity: bob });
    actor.send({ type: "session.presence.failed" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual([`register:${bob}`, `close:${CLOSE.BACKEND_UNAVAILABLE}`]);
  });

  it("pings every beat of the host's shared heartbeat and closes after two unanswered pings", () => {
    const { actor, effects, online } = startSession();
    online();
    actor.send({ type: "session.heartbeat" });
    actor.send({ type: "session.heartbeat" });
    expect(effects.filter((e) => e === "ping")).toHaveLength(2);
    expect(actor.getSnapshot().matches("online")).toBe(true);
    actor.send({ type: "session.heartbeat" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects.slice(-2)).toEqual(["unregister", `close:${CLOSE.HEARTBEAT_TIMEOUT}`]);
  });

  it("stays online as long as pongs arrive", () => {
    const { actor, effects, online } = startSession();
    online();
    for (let i = 0; i < 10; i++) {
      actor.send({ type: "session.heartbeat" });
      actor.send({ type: "session.pong" });
    }
    expect(actor.getSnapshot().matches("online")).toBe(true);
    expect(effects.filter((e) => e === "ping")).toHaveLength(10);
  });

  it("closes a slow consumer with SLOW_CONSUMER", () => {
    const { actor, effects, online } = startSession();
    online();
    actor.send({ type: "session.buffer.exceeded" });
    expect(effects.slice(-2)).toEqual(["unregister", `close:${CLOSE.SLOW_CONSUMER}`]);
  });

  it("drains: waits for the buffer to flush, then closes with GOING_AWAY", () => {
    const { actor, effects, online } = startSession();
    online();
    actor.send({ type: "session.drain" });
    expect(actor.getSnapshot().value).toBe("draining");
    expect(effects.at(-1)).toBe("awaitFlush");
    actor.send({ type: "session.flushed" });
    expect(effects.slice(-2)).toEqual(["unregister", `close:${CLOSE.GOING_AWAY}`]);
  });

  it("drain gives up after the drain timeout", () => {
    const { actor, effects, clock, online } = startSession();
    online();
    actor.send({ type: "session.drain" });
    clock.increment(5000);
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects.at(-1)).toBe(`close:${CLOSE.GOING_AWAY}`);
  });

  it("a socket closed by the client unregisters presence and does not close it again", () => {
    const { actor, effects, online } = startSession();
    online();
    actor.send({ type: "session.socket.closed", code: 1006 });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects.slice(-1)).toEqual(["unregister"]);
    expect(actor.getSnapshot().context.closeCode).toBe(1006);
  });

  it("closes with TOKEN_EXPIRED when the token runs out while online", () => {
    const { actor, effects, clock } = startSession({ heartbeatMs: 1_000_000 });
    actor.send({ type: "session.auth.accepted", identity: bob, tokenTtlMs: 60_000 });
    actor.send({ type: "session.presence.registered" });
    clock.increment(59_999);
    expect(actor.getSnapshot().matches("online")).toBe(true);
    clock.increment(1);
    expect(effects.at(-1)).toBe(`close:${CLOSE.TOKEN_EXPIRED}`);
  });

  describe("token refresh (the WebSocket auth frame)", () => {
    const alice = "urn:sm:user:alice" as Urn;
    function onlineFor(ttlMs: number) {
      const session = startSession({ heartbeatMs: 1_000_000 });
      session.actor.send({ type: "session.auth.accepted", identity: bob, tokenTtlMs: ttlMs });
      session.actor.send({ type: "session.presence.registered" });
      return session;
    }

    it("session.auth.refreshed restarts the expiry timer from the new token's lifetime", () => {
      const { actor, effects, clock } = onlineFor(60_000);
      clock.increment(50_000);
      actor.send({ type: "session.auth.refreshed", identity: bob, tokenTtlMs: 60_000 });
      expect(actor.getSnapshot().context.tokenTtlMs).toBe(60_000);
      clock.increment(10_000); // the old token's end passes: still online
      expect(actor.getSnapshot().matches("online")).toBe(true);
      clock.increment(49_999);
      expect(actor.getSnapshot().matches("online")).toBe(true);
      clock.increment(1);
      expect(actor.getSnapshot().status).toBe("done");
      expect(effects.at(-1)).toBe(`close:${CLOSE.TOKEN_EXPIRED}`);
      expect(effects.filter((e) => e === "online")).toHaveLength(1); // goOnline ran once: the refresh did not re-enter online
    });

    it("refreshes repeatedly; a token without exp stops the expiry", () => {
      const { actor, clock } = onlineFor(1_000);
      for (let i = 0; i < 5; i++) {
        clock.increment(900);
        actor.send({ type: "session.auth.refreshed", identity: bob, tokenTtlMs: 1_000 });
      }
      actor.send({ type: "session.auth.refreshed", identity: bob });
      clock.increment(10_000_000);
      expect(actor.getSnapshot().matches("online")).toBe(true);
    });

    it("a refresh for another identity is ignored: the old token still expires with 4002", () => {
      const { actor, effects, clock } = onlineFor(60_000);
      actor.send({ type: "session.auth.refreshed", identity: alice, tokenTtlMs: 3_600_000 });
      expect(actor.getSnapshot().context.tokenTtlMs).toBe(60_000);
      clock.increment(60_000);
      expect(actor.getSnapshot().status).toBe("done");
      expect(effects.at(-1)).toBe(`close:${CLOSE.TOKEN_EXPIRED}`);
    });

    it("draining stops the expiry clock (closes 1001 by drain, not 4002)", () => {
      const { actor, effects, clock } = onlineFor(1_000);
      actor.send({ type: "session.drain" });
      clock.increment(1_000);
      expect(actor.getSnapshot().value).toBe("draining");
      clock.increment(5_000);
      expect(effects.at(-1)).toBe(`close:${CLOSE.GOING_AWAY}`);
    });
  });
});

function startRouter(maxInFlight = 4) {
  const clock = new SimulatedClock();
  const effects: string[] = [];
  const actor = createActor(
    routerMachine.provide({
      actions: {
        pauseIntake: () => effects.push("pause"),
        resumeIntake: () => effects.push("resume"),
        closeIntake: () => effects.push("close"),
        stopped: () => effects.push("stopped"),
      },
    }),
    { clock, input: { maxInFlight, drainTimeoutMs: 1000 } },
  ).start();
  return { actor, effects, clock };
}

describe("router machine", () => {
  it("pauses intake when full and resumes at the low-water mark", () => {
    const { actor, effects } = startRouter(4);
    for (let i = 0; i < 3; i++) actor.send({ type: "router.delivery.started" });
    expect(actor.getSnapshot().value).toBe("running");
    actor.send({ type: "router.delivery.started" });
    expect(actor.getSnapshot().value).toBe("paused");
    expect(effects).toEqual(["pause"]);
    actor.send({ type: "router.delivery.settled" });
    expect(actor.getSnapshot().value).toBe("paused");
    actor.send({ type: "router.delivery.settled" });
    expect(actor.getSnapshot().value).toBe("running");
    expect(effects).toEqual(["pause", "resume"]);
    expect(actor.getSnapshot().context.inFlight).toBe(2);
  });

  it("takes counted events: a turn's net change as one event", () => {
    const { actor, effects } = startRouter(4);
    actor.send({ type: "router.delivery.started", count: 5 });
    expect(actor.getSnapshot().value).toBe("paused");
    actor.send({ type: "router.delivery.settled", count: 2 });
    expect(actor.getSnapshot().value).toBe("paused");
    actor.send({ type: "router.delivery.settled", count: 1 });
    expect(actor.getSnapshot().value).toBe("running");
    expect(effects).toEqual(["pause", "resume"]);
    expect(actor.getSnapshot().context).toMatchObject({ inFlight: 2, started: 5, settled: 3 });
  });

  it("stop drains in-flight work before stopping", () => {
    const { actor, effects } = startRouter(4);
    actor.send({ type: "router.delivery.started" });
    actor.send({ type: "router.delivery.started" });
    actor.send({ type: "router.stop" });
    expect(actor.getSnapshot().value).toBe("draining");
    actor.send({ type: "router.delivery.settled" });
    expect(actor.getSnapshot().value).toBe("draining");
    actor.send({ type: "router.delivery.settled" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["pause", "close", "stopped"]);
    expect(actor.getSnapshot().context.abandoned).toBe(0);
  });

  it("stop with nothing in flight stops at once", () => {
    const { actor, effects } = startRouter(4);
    actor.send({ type: "router.stop" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["pause", "close", "stopped"]);
  });

  it("a drain that times out abandons the rest to the bus", () => {
    const { actor, clock } = startRouter(4);
    for (let i = 0; i < 3; i++) actor.send({ type: "router.delivery.started" });
    actor.send({ type: "router.stop" });
    clock.increment(1000);
    expect(actor.getSnapshot().status).toBe("done");
    expect(actor.getSnapshot().context.abandoned).toBe(3);
  });
});

describe("session machine: authentication in connecting (issue 13)", () => {
  function authenticating(verify: () => Promise<{ identity: Urn; tokenTtlMs?: number }>) {
    const effects: string[] = [];
    const actor = createActor(
      sessionMachine.provide({
        actions: {
          // The host's verifier effect: its verdict comes back as an event.
          authenticate: ({ self }) =>
            void verify().then(
              (verdict) => self.send({ type: "session.auth.verified", ...verdict }),
              (error: unknown) => self.send({ type: "session.auth.rejected", error }),
            ),
          registerPresence: (_, params) => effects.push(`register:${params.identity}`),
          closeSocket: (_, params) => effects.push(`close:${params.code}`),
        },
      }),
      { input: { sessionId: "s1", protocol: "ws", authTimeoutMs: 1000, heartbeatMs: 30_000, drainTimeoutMs: 5000 } },
    ).start();
    return { actor, effects };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it("a verified credential waits in connecting for the transport, then authenticates", async () => {
    const { actor, effects } = authenticating(async () => ({ identity: bob, tokenTtlMs: 60_000 }));
    await settle();
    expect(actor.getSnapshot().value).toBe("connecting");
    expect(actor.getSnapshot().context).toMatchObject({ verified: true, identity: bob, tokenTtlMs: 60_000 });
    expect(effects).toEqual([]);
    actor.send({ type: "session.transport.attached" });
    expect(actor.getSnapshot().value).toBe("authenticated");
    expect(effects).toEqual([`register:${bob}`]);
  });

  it("a refused credential ends the session with auth.rejected's close and keeps the verifier's error", async () => {
    const refusal = new Error("TOKEN_EXPIRED");
    const { actor, effects } = authenticating(() => Promise.reject(refusal));
    await settle();
    expect(actor.getSnapshot().status).toBe("done");
    expect(actor.getSnapshot().context.authError).toBe(refusal);
    expect(actor.getSnapshot().context.closeCode).toBe(CLOSE.NORMAL);
    expect(effects).toEqual([`close:${CLOSE.NORMAL}`]);
  });
});
