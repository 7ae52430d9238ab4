import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { busConsumer, type ConsumerCounts } from "../actors/router/consumer.ts";
import { routerMachine } from "../actors/router/machine.ts";
import type { BusRecord, Delivery } from "../backends/ingress-bus.ts";
import { createMemoryIngressBus } from "../backends/memory-ingress-bus.ts";
import type { RouteOutcome } from "../metrics/registry.ts";
import type { Urn } from "../core/urn.ts";
import { waitFor } from "./contracts/fixture.ts";

/*
 * The router actor owns consumption (issue 13): it invokes the bus consumer as its child, which
 * routes, acks and nacks over a real bus (the in-memory reference bus; the contract suites run the
 * same interface on SQLite, NATS and Pub/Sub), and the machine holds the in-flight bound.
 */
function record(i: number): BusRecord {
  return { recipientId: "urn:sm:user:bob" as Urn, messageId: `m${i}`, isEphemeral: false, priority: 0, envelope: "{}", acceptedAt: Date.now(), path: "http" };
}

function hosted(options: { maxInFlight: number; routeBacklogOnStop?: boolean; route: (r: BusRecord) => Promise<RouteOutcome> }) {
  const bus = createMemoryIngressBus({ maxAttempts: 3, retryBaseMs: 5 });
  const counts: ConsumerCounts = { inFlight: 0, settled: 0 };
  const log: string[] = [];
  let closed = false;
  const consumer = busConsumer(
    {
      bus,
      route: options.route,
      maxInFlight: options.maxInFlight,
      took: () => {},
      routed: (d: Delivery, outcome) => log.push(`routed:${d.record.messageId}:${outcome}`),
      failed: (d: Delivery) => log.push(`failed:${d.record.messageId}:${d.attempt}`),
      routeBacklog: async () => {
        while ((await bus.stats()).backlog > 0) await new Promise((r) => setTimeout(r, 5));
      },
      closed: () => (closed = true),
    },
    counts,
  );
  const states: string[] = [];
  const actor = createActor(routerMachine.provide({ actors: { consumer } }), {
    input: { maxInFlight: options.maxInFlight, drainTimeoutMs: 5_000, routeBacklogOnStop: options.routeBacklogOnStop },
  });
  actor.subscribe((s) => {
    const v = String(s.value);
    if (states.at(-1) !== v) states.push(v);
  });
  actor.start();
  return { bus, counts, log, actor, states, isClosed: () => closed };
}

describe("router actor with its bus consumer child", () => {
  it("routes and acks every record, pausing at the in-flight bound and resuming below it", async () => {
    const gates: Array<() => void> = [];
    const { bus, counts, log, actor, states } = hosted({
      maxInFlight: 4,
      route: () => new Promise<RouteOutcome>((resolve) => gates.push(() => resolve("push_due"))),
    });
    for (let i = 0; i < 10; i++) await bus.publish(record(i));
    await waitFor(() => actor.getSnapshot().value === "paused", "paused");
    expect(actor.getSnapshot().context.inFlight).toBeGreaterThanOrEqual(4);
    // The bus stopped handing out deliveries at the bound.
    expect(gates.length).toBe(4);
    while (counts.settled < 10) {
      gates.splice(0).forEach((open) => open());
      await new Promise((r) => setTimeout(r, 2));
    }
    await waitFor(() => actor.getSnapshot().context.inFlight === 0, "nothing in flight");
    expect(states).toContain("paused");
    expect(actor.getSnapshot().value).toBe("running");
    expect(log.filter((l) => l.startsWith("routed:"))).toHaveLength(10);
    expect((await bus.stats()).backlog).toBe(0);
    actor.stop();
  });

  it("a failed route is nacked and redelivered, then dead-lettered after maxAttempts", async () => {
    const { bus, log, actor } = hosted({ maxInFlight: 8, route: () => Promise.reject(new Error("store down")) });
    await bus.publish(record(1));
    await waitFor(async () => (await bus.stats()).deadLetters === 1, "a dead letter");
    expect(log).toEqual(["failed:m1:1", "failed:m1:2", "failed:m1:3"]);
    expect((await bus.deadLetters(10)).map((d) => d.record.messageId)).toEqual(["m1"]);
    actor.stop();
  });

  it("stop drains in-flight work, then closes the subscription; the rest stays on the bus", async () => {
    const gates: Array<() => void> = [];
    const { bus, counts, actor, isClosed } = hosted({
      maxInFlight: 2,
      route: () => new Promise<RouteOutcome>((resolve) => gates.push(() => resolve("push_due"))),
    });
    for (let i = 0; i < 5; i++) await bus.publish(record(i));
    await waitFor(() => actor.getSnapshot().value === "paused", "paused");
    actor.send({ type: "router.stop" });
    expect(actor.getSnapshot().value).toBe("draining");
    gates.splice(0).forEach((open) => open());
    await waitFor(() => actor.getSnapshot().status === "done" && isClosed(), "stopped and closed");
    expect(counts.inFlight).toBe(0);
    expect(actor.getSnapshot().context.abandoned).toBe(0);
    expect((await bus.stats()).backlog).toBe(5 - counts.settled);
    expect((await bus.stats()).backlog).toBeGreaterThan(0);
  });

  it("a stop that routes the backlog first (the embedded bus) leaves nothing on the bus", async () => {
    const { bus, counts, actor, isClosed } = hosted({
      maxInFlight: 2,
      routeBacklogOnStop: true,
      route: () => new Promise<RouteOutcome>((resolve) => setTimeout(() => resolve("push_due"), 1)),
    });
    await Promise.all(Array.from({ length: 50 }, (_, i) => bus.publish(record(i))));
    expect((await bus.stats()).backlog).toBeGreaterThan(2);
    actor.send({ type: "router.stop" });
    await waitFor(() => actor.getSnapshot().status === "done" && isClosed(), "stopped and closed");
    expect(counts.settled).toBe(50);
    expect((await bus.stats()).backlog).toBe(0);
  });
});
