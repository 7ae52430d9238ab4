import { describe, expect, it } from "vitest";
import { createActor, SimulatedClock } from "xstate";
import { shardMachine } from "../actors/shard/machine.ts";

const RENEW = 1_000;
const RETRY = 100;

function startShard() {
  const clock = new SimulatedClock();
  const effects: string[] = [];
  const actor = createActor(
    shardMachine.provide({
      actions: {
        acquire: (_, p) => effects.push(`acquire ${p.shard}`),
        renew: (_, p) => effects.push(`renew ${p.shard}@${p.epoch}`),
        release: (_, p) => effects.push(`release ${p.shard}@${p.epoch}`),
        owned: (_, p) => effects.push(`owned ${p.shard}@${p.epoch}`),
        unowned: (_, p) => effects.push(`unowned ${p.shard}`),
      },
    }),
    { clock, input: { shard: 9, renewEveryMs: RENEW, retryEveryMs: RETRY } },
  ).start();
  const owning = () => actor.getSnapshot().matches("owning");
  const state = () => actor.getSnapshot().value;
  return { actor, clock, effects, owning, state };
}

/** Started, assigned and granted at epoch 4 with 3 s of validity left. */
function owned() {
  const s = startShard();
  s.actor.send({ type: "shard.assigned" });
  s.actor.send({ type: "shard.acquired", epoch: 4, validForMs: 3_000 });
  return s;
}

describe("shard ownership machine", () => {
  it("acquires when assigned and owns at the granted epoch", () => {
    const { actor, effects, owning, state } = startShard();
    expect(state()).toBe("standby");
    actor.send({ type: "shard.assigned" });
    expect(state()).toBe("acquiring");
    expect(owning()).toBe(false);
    actor.send({ type: "shard.acquired", epoch: 4, validForMs: 3_000 });
    expect(owning()).toBe(true);
    expect(actor.getSnapshot().context.epoch).toBe(4);
    expect(effects).toEqual(["acquire 9", "owned 9@4"]);
  });

  it("goes back to standby when another node holds the lease or the engine fails", () => {
    const { actor, state } = startShard();
    actor.send({ type: "shard.assigned" });
    actor.send({ type: "shard.taken" });
    expect(state()).toBe("standby");
    actor.send({ type: "shard.assigned" });
    actor.send({ type: "shard.failed" });
    expect(state()).toBe("standby");
  });

  it("renews on a timer, and each renewal restarts the lapse timer", () => {
    const { actor, clock, effects, owning } = owned();
    clock.increment(RENEW - 1);
    expect(effects).not.toContain("renew 9@4");
    clock.increment(1);
    expect(effects.filter((e) => e === "renew 9@4")).toHaveLength(1);
    actor.send({ type: "shard.renewed", validForMs: 3_000 });
    // 2.5 s after the first answer: past the first validity (3 s from acquiring, 1 s + 2.5 s), still owning.
    clock.increment(RENEW);
    actor.send({ type: "shard.renewed", validForMs: 3_000 });
    clock.increment(2_500);
    expect(owning()).toBe(true);
    expect(effects.filter((e) => e === "renew 9@4").length).toBeGreaterThanOrEqual(3);
  });

  it("stops acting as owner when the lease lapses by the local clock while the engine cannot be reached", () => {
    const { actor, clock, effects, owning, state } = owned();
    clock.increment(RENEW);
    actor.send({ type: "shard.failed" }); // renewal failed: retry soon
    clock.increment(RETRY);
    actor.send({ type: "shard.failed" });
    clock.increment(RETRY);
    expect(effects.filter((e) => e.startsWith("renew"))).toHaveLength(3);
    expect(owning()).toBe(true);
    // A renewal that never answers (the engine hangs): the lapse still comes, at 3 s after the grant.
    clock.increment(3_000 - RENEW - 2 * RETRY - 1);
    expect(owning()).toBe(true);
    clock.increment(1);
    expect(owning()).toBe(false);
    expect(state()).toBe("standby");
    expect(effects.at(-1)).toBe("unowned 9");
    // A late answer to the renewal changes nothing.
    actor.send({ type: "shard.renewed", validForMs: 3_000 });
    expect(owning()).toBe(false);
  });

  it("a renewal that finds the lease lost stops ownership at once", () => {
    const { actor, clock, effects, state } = owned();
    clock.increment(RENEW);
    actor.send({ type: "shard.lost" });
    expect(state()).toBe("standby");
    expect(effects.at(-1)).toBe("unowned 9");
  });

  it("hands over when unassigned: stops acting as owner before releasing", () => {
    const { actor, effects, state } = owned();
    actor.send({ type: "shard.unassigned" });
    expect(effects.slice(-2)).toEqual(["unowned 9", "release 9@4"]);
    expect(state()).toBe("releasing");
    actor.send({ type: "shard.released" });
    expect(state()).toBe("standby");
  });

  it("a stop while owning releases and ends; a failed release ends too (the lease lapses by TTL)", () => {
    const a = owned();
    a.actor.send({ type: "shard.stop" });
    expect(a.effects.slice(-2)).toEqual(["unowned 9", "release 9@4"]);
    a.actor.send({ type: "shard.released" });
    expect(a.actor.getSnapshot().status).toBe("done");
    const b = owned();
    b.actor.send({ type: "shard.stop" });
    b.actor.send({ type: "shard.failed" });
    expect(b.actor.getSnapshot().status).toBe("done");
  });

  it("a stop while acquiring gives a granted lease straight back, never owning it", () => {
    const { actor, effects } = startShard();
    actor.send({ type: "shard.assigned" });
    actor.send({ type: "shard.stop" });
    actor.send({ type: "shard.acquired", epoch: 7, validForMs: 3_000 });
    expect(effects).toEqual(["acquire 9", "release 9@7"]);
    expect(actor.getSnapshot().status).toBe("done");
  });

  it("a grant answered too late to act on is released, never owned", () => {
    const { actor, effects, state } = startShard();
    actor.send({ type: "shard.assigned" });
    actor.send({ type: "shard.acquired", epoch: 8, validForMs: 0 });
    expect(state()).toBe("standby");
    expect(effects).toEqual(["acquire 9", "release 9@8"]);
  });

  it("a stop in standby ends at once", () => {
    const { actor, effects } = startShard();
    actor.send({ type: "shard.stop" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual([]);
  });
});
