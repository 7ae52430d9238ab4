import { describe, expect, it } from "vitest";
import { createActor, fromPromise, SimulatedClock } from "xstate";
import { presenceMachine } from "../actors/presence/machine.ts";

/* The presence actor (issue 13): the heartbeat as delayed transitions, on a simulated clock. */
function start(options: { failRenewals?: number; releaseFails?: boolean } = {}) {
  const clock = new SimulatedClock();
  const effects: string[] = [];
  let failures = options.failRenewals ?? 0;
  const actor = createActor(
    presenceMachine.provide({
      actors: {
        renew: fromPromise(async () => {
          effects.push("renew");
          if (failures-- > 0) throw new Error("store down");
        }),
        release: fromPromise(async () => {
          effects.push("release");
          if (options.releaseFails) throw new Error("store down");
        }),
      },
      actions: {
        renewFailed: (_, { error }) => effects.push(`renewFailed:${(error as Error).message}`),
        releaseFailed: () => effects.push("releaseFailed"),
      },
    }),
    { clock, input: { heartbeatMs: 10_000 } },
  ).start();
  return { actor, clock, effects };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("presence actor", () => {
  it("renews the TTL every heartbeat, not before", async () => {
    const { actor, clock, effects } = start();
    clock.increment(9_999);
    await settle();
    expect(effects).toEqual([]);
    clock.increment(1);
    await settle();
    expect(effects).toEqual(["renew"]);
    expect(actor.getSnapshot().value).toBe("waiting");
    clock.increment(10_000);
    await settle();
    clock.increment(10_000);
    await settle();
    expect(effects).toEqual(["renew", "renew", "renew"]);
    expect(actor.getSnapshot().context.renewals).toBe(3);
  });

  it("a failed renewal is logged and retried at the next beat", async () => {
    const { actor, clock, effects } = start({ failRenewals: 1 });
    clock.increment(10_000);
    await settle();
    expect(effects).toEqual(["renew", "renewFailed:store down"]);
    clock.increment(10_000);
    await settle();
    expect(effects).toEqual(["renew", "renewFailed:store down", "renew"]);
    expect(actor.getSnapshot().context).toMatchObject({ renewals: 1, failures: 1 });
  });

  it("a renewal still running holds the next beat (renewals never stack)", async () => {
    const clock = new SimulatedClock();
    let finish: () => void = () => {};
    let started = 0;
    const actor = createActor(
      presenceMachine.provide({
        actors: {
          renew: fromPromise(() => {
            started++;
            return new Promise<void>((resolve) => (finish = resolve));
          }),
        },
      }),
      { clock, input: { heartbeatMs: 10_000 } },
    ).start();
    clock.increment(10_000);
    clock.increment(10_000);
    clock.increment(10_000);
    await settle();
    expect(started).toBe(1);
    expect(actor.getSnapshot().value).toBe("renewing");
    finish();
    await settle();
    clock.increment(10_000);
    await settle();
    expect(started).toBe(2);
  });

  it("stop releases this instance's entries and ends; no beat after it", async () => {
    const { actor, clock, effects } = start();
    clock.increment(10_000);
    await settle();
    actor.send({ type: "presence.stop" });
    await settle();
    expect(actor.getSnapshot().status).toBe("done");
    clock.increment(100_000);
    await settle();
    expect(effects).toEqual(["renew", "release"]);
  });

  it("a failed release is logged; the entries expire with the TTL", async () => {
    const { actor, effects } = start({ releaseFails: true });
    actor.send({ type: "presence.stop" });
    await settle();
    expect(actor.getSnapshot().status).toBe("done");
    expect(effects).toEqual(["release", "releaseFailed"]);
  });
});
