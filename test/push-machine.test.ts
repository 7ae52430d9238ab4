import { describe, expect, it } from "vitest";
import { createActor, SimulatedClock } from "xstate";
import { pushMachine } from "../actors/push/machine.ts";

function startPush(input: Partial<{ retryBaseMs: number; drainTimeoutMs: number }> = {}) {
  const clock = new SimulatedClock();
  const effects: string[] = [];
  const actor = createActor(
    pushMachine.provide({
      actions: {
        takeBatch: () => effects.push("take"),
        sendBatch: () => effects.push("send"),
        stopped: () => effects.push("stopped"),
      },
    }),
    { clock, input: { retryBaseMs: 1000, drainTimeoutMs: 5000, ...input } },
  ).start();
  const state = () => actor.getSnapshot().value;
  return { actor, clock, effects, state };
}

describe("push machine", () => {
  it("idles until the queue changes, then takes and sends batches until none is left", () => {
    const { actor, effects, state } = startPush();
    expect(state()).toBe("idle");
    expect(effects).toEqual([]);
    actor.send({ type: "push.queue.changed" });
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 3 });
    expect(state()).toBe("sending");
    actor.send({ type: "push.batch.done", settled: 3, retried: 0 });
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 0 });
    expect(state()).toBe("idle");
    expect(effects).toEqual(["take", "send", "take"]);
    expect(actor.getSnapshot().context.batches).toBe(1);
  });

  it("takes again when the queue changed while a take was reading it", () => {
    const { actor, effects, state } = startPush();
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 0 });
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 0 });
    expect(state()).toBe("idle");
    expect(effects).toEqual(["take", "take"]);
  });

  it("ignores queue changes while sending: the loop comes back for them", () => {
    const { actor, effects, state } = startPush();
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 1 });
    actor.send({ type: "push.queue.changed" });
    expect(state()).toBe("sending");
    actor.send({ type: "push.batch.done", settled: 1, retried: 0 });
    expect(effects).toEqual(["take", "send", "take"]);
  });

  it("backs off, doubling, after batches that made no progress, and resets after one that did", () => {
    const { actor, clock, effects, state } = startPush({ retryBaseMs: 1000 });
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 2 });
    actor.send({ type: "push.batch.done", settled: 0, retried: 2 });
    expect(state()).toBe("backoff");
    actor.send({ type: "push.queue.changed" }); // provider trouble: new pushes wait too
    expect(state()).toBe("backoff");
    clock.increment(999);
    expect(state()).toBe("backoff");
    clock.increment(1);
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 2 });
    actor.send({ type: "push.batch.done", settled: 0, retried: 2 });
    clock.increment(1999);
    expect(state()).toBe("backoff");
    clock.increment(1);
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 2 });
    actor.send({ type: "push.batch.done", settled: 1, retried: 1 });
    expect(state()).toBe("draining");
    expect(actor.getSnapshot().context.failures).toBe(0);
    expect(effects).toEqual(["take", "send", "take", "send", "take", "send", "take"]);
  });

  it("backs off after a take or send that failed as a whole", () => {
    const { actor, clock, state } = startPush({ retryBaseMs: 200 });
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.failed" });
    expect(state()).toBe("backoff");
    clock.increment(200);
    actor.send({ type: "push.batch.taken", count: 1 });
    actor.send({ type: "push.batch.failed" });
    expect(state()).toBe("backoff");
    clock.increment(399);
    expect(state()).toBe("backoff");
    clock.increment(1);
    expect(state()).toBe("draining");
  });

  it("waits for a scheduled retry when nothing else is due, and wakes early for new pushes", () => {
    const { actor, clock, effects, state } = startPush();
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 0, retryInMs: 4000 });
    expect(state()).toBe("backoff");
    clock.increment(3999);
    expect(state()).toBe("backoff");
    clock.increment(1);
    expect(state()).toBe("draining");
    actor.send({ type: "push.batch.taken", count: 0, retryInMs: 4000 });
    clock.increment(100);
    actor.send({ type: "push.queue.changed" });
    expect(state()).toBe("draining");
    expect(effects).toEqual(["take", "take", "take"]);
  });

  it("stops at once when idle or backing off", () => {
    const idle = startPush();
    idle.actor.send({ type: "push.stop" });
    expect(idle.actor.getSnapshot().status).toBe("done");
    expect(idle.effects).toEqual(["stopped"]);

    const waiting = startPush();
    waiting.actor.send({ type: "push.queue.changed" });
    waiting.actor.send({ type: "push.batch.failed" });
    waiting.actor.send({ type: "push.stop" });
    expect(waiting.actor.getSnapshot().status).toBe("done");
    expect(waiting.effects).toEqual(["take", "stopped"]);
  });

  it("stop drains: the batch being sent finishes, no new batch is taken", () => {
    const { actor, effects, state } = startPush();
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 5 });
    actor.send({ type: "push.stop" });
    expect(state()).toBe("stopping");
    actor.send({ type: "push.queue.changed" });
    expect(state()).toBe("stopping");
    actor.send({ type: "push.batch.done", settled: 5, retried: 0 });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["take", "send", "stopped"]);
  });

  it("stop during a take does not send what was taken", () => {
    const { actor, effects } = startPush();
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.stop" });
    actor.send({ type: "push.batch.taken", count: 5 });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["take", "stopped"]);
  });

  it("a drain that times out stops anyway; the unsettled pushes stay queued", () => {
    const { actor, clock, effects, state } = startPush({ drainTimeoutMs: 3000 });
    actor.send({ type: "push.queue.changed" });
    actor.send({ type: "push.batch.taken", count: 5 });
    actor.send({ type: "push.stop" });
    clock.increment(2999);
    expect(state()).toBe("stopping");
    clock.increment(1);
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["take", "send", "stopped"]);
  });
});
