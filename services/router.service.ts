import type { Context, ServiceSchema } from "moleculer";
import { createActor, type ActorRefFrom } from "xstate";
import { busConsumer, type ConsumerCounts } from "../actors/router/consumer.ts";
import { routerMachine, type RouterMachine } from "../actors/router/machine.ts";
import type { IngressBus } from "../backends/ingress-bus.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import { explainRoute, type SessionView } from "../routing/explain.ts";
import type { Route } from "../routing/router.ts";
import { within, type DrainClock } from "../platform/drain.ts";
import { deadLetterView } from "../lifecycle/dead-letters.ts";
import { mapped } from "./errors.ts";
import { urnParam } from "./mailbox.service.ts";
import { createDownstreamWatch } from "../routing/downstream-watch.ts";

export interface RouterServiceDeps {
  readonly bus: IngressBus;
  readonly busName: string;
  readonly route: Route;
  readonly metrics: Metrics;
  readonly maxInFlight: number;
  readonly drainTimeoutMs: number;
  /** The presence the router reads, for `router.explain` (operator tools, issue 7). */
  readonly presence?: PresenceStore;
  /**
   * A stop first routes the bus's whole backlog (up to the drain clock's share), not only what is
   * in flight: for a bus only this process reads (embedded), where what is left would wait for
   * this node's next start. A shared bus leaves the rest to the other nodes.
   */
  readonly drainBacklog?: DrainClock;
  /** Resolves when the sends the ingress was accepting at the drain have settled (before the backlog is measured). */
  readonly intakeSettled?: () => Promise<void>;
}

/**
 * Hosts the router actor (actors/router/machine.ts), which owns consumption: it invokes the bus
 * consumer (actors/router/consumer.ts) as its child. This service wires the effects (bus, routing
 * rules, metrics, logs, the drain clock), starts and stops the actor, and answers the actions.
 */
export function createRouterService(deps: RouterServiceDeps) {
  const { bus, route, metrics } = deps;
  let actor: ActorRefFrom<RouterMachine> | undefined;
  let done: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  /** Exact counts, kept by the consumer for `router.stats`. */
  const counts: ConsumerCounts = { inFlight: 0, settled: 0 };

  /** Resolves once the bus holds nothing unacked, or when the clock's share is spent. */
  async function routeBacklog(clock: DrainClock): Promise<void> {
    await within(deps.intakeSettled?.() ?? Promise.resolve(), clock.until(0.3));
    while (clock.until(0.75) > 0) {
      const { backlog } = await bus.stats().catch(() => ({ backlog: 0 }));
      if (backlog === 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops intake and resolves once in-flight work has settled (or the drain timed out) and the subscription closed. */
  function stop(): Promise<void> {
    stopping ??= (async () => {
      actor?.send({ type: "router.stop" });
      await done;
    })();
    return stopping;
  }

  const schema: ServiceSchema = {
    name: "router",
    actions: {
      send: {
        params: { envelope: "object", identity: "string" },
        handler: (ctx: Context<{ envelope: object; identity: string }>) => ctx.call("ingress.accept", ctx.params),
      },
      stats: {
        handler: () =>
          mapped(async () => {
            const snapshot = actor?.getSnapshot();
            return { state: snapshot?.value ?? "stopped", inFlight: counts.inFlight, routed: counts.settled, bus: await bus.stats() };
          }),
      },
      /** Dead letters of the ingress bus, newest first: header fields, reason, attempts, time (never payload bytes). */
      deadLetters: {
        params: { limit: { type: "number", integer: true, min: 1, max: 1000, optional: true, convert: true } },
        handler: (ctx: Context<{ limit?: number }>) => mapped(async () => (await bus.deadLetters(ctx.params.limit ?? 100)).map(deadLetterView)),
      },
      /** Puts dead letters back on the ingress bus with their message ids (de-duplication makes a replay of a stored one harmless). */
      replay: {
        params: { ids: { type: "array", items: "string", min: 1, max: 1000 } },
        handler: (ctx: Context<{ ids: string[] }>) => mapped(async () => ({ replayed: await bus.replayDeadLetters(ctx.params.ids) })),
      },
      dropDeadLetters: {
        params: { ids: { type: "array", items: "string", min: 1, max: 1000 } },
        handler: (ctx: Context<{ ids: string[] }>) => mapped(async () => ({ dropped: await bus.dropDeadLetters(ctx.params.ids) })),
      },
      /** What the router would do now with a message to `urn`, and why (presence and the routing rules; no mailbox read). */
      explain: {
        params: { urn: urnParam },
        handler: (ctx: Context<{ urn: Urn }>) =>
          mapped(async () => {
            const presence = deps.presence;
            if (!presence) throw new Error("router.explain needs the presence store");
            return explainRoute(ctx.params.urn, presence, (nodeID) =>
              ctx.call<SessionView[], { urn: Urn }>("gateway.sessions", { urn: ctx.params.urn }, { nodeID }),
            );
          }),
      },
    },
    async started() {
      const log = this.logger;
      let subscriptionClosed: () => void = () => {};
      const closed = new Promise<void>((resolve) => (subscriptionClosed = resolve));
      const downstream = createDownstreamWatch((event) => actor?.send({ type: event }));
      const consumer = busConsumer(
        {
          bus,
          route,
          maxInFlight: deps.maxInFlight,
          took: (ms) => downstream.took(ms),
          routed: (delivery, outcome) => {
            metrics.routed(outcome, delivery.record.acceptedAt);
            log.debug({ messageId: delivery.record.messageId, outcome, path: delivery.record.path, attempt: delivery.attempt }, "routed");
          },
          failed: (delivery, err) => {
            metrics.routeFailed();
            log.warn({ err, messageId: delivery.record.messageId, attempt: delivery.attempt }, "routing failed; the record goes back to the bus");
          },
          routeBacklog: () => (deps.drainBacklog ? routeBacklog(deps.drainBacklog) : Promise.resolve()),
          closed: subscriptionClosed,
        },
        counts,
      );
      stopping = undefined;
      actor = createActor(
        routerMachine.provide({
          actors: { consumer },
          actions: {
            stopped: ({ context }) => {
              if (context.abandoned > 0) log.warn({ abandoned: context.abandoned }, "router drain timed out; unacked records return to the bus");
            },
          },
        }),
        { id: "router", input: { maxInFlight: deps.maxInFlight, drainTimeoutMs: deps.drainTimeoutMs, routeBacklogOnStop: deps.drainBacklog !== undefined } },
      );
      const finished = new Promise<void>((resolve) => actor?.subscribe({ complete: resolve, error: () => resolve() }));
      done = Promise.all([finished, closed]).then(() => {});
      actor.start();
      metrics.onScrape(async () => {
        const stats = await bus.stats();
        metrics.busBacklog.set({ bus: deps.busName }, stats.backlog);
        metrics.busInFlight.set({ bus: deps.busName }, stats.inFlight);
        metrics.busDead.set({ bus: deps.busName }, stats.deadLetters);
        metrics.busOldest.set({ bus: deps.busName }, stats.oldestUnackedAgeMs / 1000);
      });
    },
    async stopped() {
      await stop();
    },
  };
  return { schema, stop, actor: () => actor };
}
