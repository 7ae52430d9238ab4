import { ServiceBroker } from "moleculer";
import { describe, expect, it } from "vitest";
import { createLifecycle } from "../platform/lifecycle.ts";
import { startInProcess } from "./helpers/in-process.ts";

/** The life cycle's order on a real Moleculer broker (platform/lifecycle.ts). */
describe("the broker starts and stops the parts in dependency order", () => {
  it("starts a part after its local dependencies, stops it before them, drains every part first, stops each once", async () => {
    const events: string[] = [];
    const lifecycle = createLifecycle();
    const broker = new ServiceBroker({ logger: false, middlewares: [lifecycle.middleware], skipProcessEventRegistration: true });
    const tick = () => new Promise((r) => setTimeout(r, 5));
    const part = (name: string, dependencies: string[] = []) =>
      broker.createService(
        lifecycle.part(
          {
            name,
            draining: () => void events.push(`drain ${name}`),
            async started() {
              await tick();
              events.push(`start ${name}`);
            },
            async stopped() {
              await tick();
              events.push(`stop ${name}`);
            },
          },
          dependencies,
        ),
      );
    // Registered in an order that is not the dependency order.
    part("edge", ["router", "store"]);
    part("router", ["store"]);
    part("push", ["store"]);
    part("store");
    await broker.start();
    const starts = events.splice(0);
    expect(starts[0]).toBe("start store");
    expect(starts.indexOf("start router")).toBeLessThan(starts.indexOf("start edge"));
    expect(lifecycle.stopOrder()).toEqual([["edge", "push"], ["router"], ["store"]]);

    await Promise.all([broker.stop(), broker.stop()]);
    const drains = events.filter((e) => e.startsWith("drain"));
    const stops = events.filter((e) => e.startsWith("stop"));
    expect(drains.sort()).toEqual(["drain edge", "drain push", "drain router", "drain store"]);
    // Every drain hook ran before the first part stopped.
    const lastDrain = events.length - 1 - [...events].reverse().findIndex((e) => e.startsWith("drain"));
    expect(events.findIndex((e) => e.startsWith("stop"))).toBeGreaterThan(lastDrain);
    expect(stops).toHaveLength(4);
    expect(stops.indexOf("stop edge")).toBeLessThan(stops.indexOf("stop router"));
    expect(stops.indexOf("stop router")).toBeLessThan(stops.indexOf("stop store"));
    expect(stops.indexOf("stop push")).toBeLessThan(stops.indexOf("stop store"));
    expect(stops.at(-1)).toBe("stop store");
  });

  it("a routing node's parts: the edge stops first, the backends last", async () => {
    const node = await startInProcess();
    try {
      expect(node.node.lifecycle.stopOrder()).toEqual([
        ["gateway", "push", "retention", "router"],
        ["devices", "mqtt", "signals", "status"],
        ["ingress", "mailbox", "presence"],
        ["limits"],
        ["backends"],
      ]);
    } finally {
      await node.stop();
    }
  });
});
