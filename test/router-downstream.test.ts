import { createActor } from "xstate";
import { describe, expect, it } from "vitest";
import { routerMachine } from "../actors/router/machine.ts";
import { CAUGHT_UP_MS, createDownstreamWatch, SLOW_ROUTE_MS } from "../routing/downstream-watch.ts";

/*
 * The router pauses its bus consumer when the mailbox store or the signals fall behind, and
 * resumes once they caught up (issue 14): events of the router actor, decided by the host's
 * measure of how long routing takes.
 */
function hosted(maxInFlight: number) {
  const effects: string[] = [];
  const actor = createActor(routerMachine.provide({ actions: { pauseIntake: () => effects.push("pause"), resumeIntake: () => effects.push("resume") } }), {
    input: { maxInFlight, drainTimeoutMs: 1000 },
  }).start();
  return { actor, effects };
}

describe("router actor: downstream falling behind", () => {
  it("pauses intake at an eighth of maxInFlight while slow, resumes when caught up and drained", () => {
    const { actor, effects } = hosted(64);
    actor.send({ type: "router.delivery.started", count: 8 });
    expect(actor.getSnapshot().value).toBe("running");
    actor.send({ type: "router.downstream.slow" });
    expect(actor.getSnapshot().value).toBe("paused");
    expect(effects).toEqual(["pause"]);
    // Still slow: draining to the low-water mark of the smaller limit (4) resumes, 5 in flight does not.
    actor.send({ type: "router.delivery.settled", count: 3 });
    expect(actor.getSnapshot().value).toBe("paused");
    actor.send({ type: "router.delivery.settled", count: 1 });
    expect(actor.getSnapshot().value).toBe("running");
    actor.send({ type: "router.delivery.started", count: 4 });
    expect(actor.getSnapshot().value).toBe("paused");
    actor.send({ type: "router.downstream.caughtUp" });
    // Caught up: the full limit and its low-water mark (32) apply again.
    expect(actor.getSnapshot().value).toBe("running");
    expect(effects).toEqual(["pause", "resume", "pause", "resume"]);
    actor.stop();
  });
});

describe("downstream watch", () => {
  it("tells slow once the average routing time passes the mark, caught up once it falls well below", () => {
    const told: string[] = [];
    const watch = createDownstreamWatch((e) => told.push(e));
    for (let i = 0; i < 20; i++) watch.took(5);
    expect(told).toEqual([]);
    for (let i = 0; i < 40 && !watch.slow(); i++) watch.took(SLOW_ROUTE_MS * 4);
    expect(told).toEqual(["router.downstream.slow"]);
    for (let i = 0; i < 200 && watch.slow(); i++) watch.took(CAUGHT_UP_MS / 10);
    expect(told).toEqual(["router.downstream.slow", "router.downstream.caughtUp"]);
  });
});
