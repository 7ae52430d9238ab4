import type { Context, ServiceSchema } from "moleculer";
import { createActor, type ActorRefFrom } from "xstate";
import { routerMachine, type RouterMachine } from "../actors/router/machine.ts";
import type { BusSubscription, Delivery, IngressBus } from "../backends/ingress-bus.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import { explainRoute, type SessionView } from "../routing/explain.ts";
import type { Route } from "../routing/router.ts";
import { within, type DrainClock } from "../runtime/drain.ts";
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

/** Lines about a message carry its id; never a payload byte. */
interface RouterLog {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/**
 * Hosts the router actor: consumes the ingress bus with bounded in-flight work, routes each
 * record, acks it once routing's durable work is done, nacks it (redelivery, then dead letter)
 * when it failed.
 */
export function createRouterService(deps: RouterServiceDeps) {
  const { bus, route, metrics } = deps;
  let subscription: BusSubscription | undefined;
  let actor: ActorRefFrom<RouterMachine> | undefined;
  let stopped: Promise<void> = Promise.resolve();

  /*
   * The actor decides from the in-flight count when intake pauses, resumes and when a stop has
   * drained. Telling it every start and settle cost two XState macrosteps per message, a fifth of
   * the routing path's CPU (README, "Performance"). So it gets the net change as one event per
   * event-loop turn, and at once when a start brings the count to the limit while it runs (so
   * intake pauses before the bus hands out more). Resuming, or finishing a drain, one turn later
   * changes nothing that matters. The counts `router.stats` reports are kept here, exact.
   */
  let inFlight = 0;
  let told = 0;
  let settled = 0;
  let syncScheduled = false;

  function tell(): void {
    const delta = inFlight - told;
    told = inFlight;
    if (delta > 0) actor?.send({ type: "router.delivery.started", count: delta });
    else if (delta < 0) actor?.send({ type: "router.delivery.settled", count: -delta });
  }

  function counted(): void {
    if (actor === undefined) return;
    if (inFlight >= deps.maxInFlight && actor.getSnapshot().matches("running")) return tell();
    if (syncScheduled) return;
    syncScheduled = true;
    setImmediate(() => {
      syncScheduled = false;
      tell();
    });
  }

  const downstream = createDownstreamWatch((event) => actor?.send({ type: event }));

  async function work(delivery: Delivery, log: RouterLog): Promise<void> {
    try {
      const began = Date.now();
      const outcome = await route(delivery.record);
      downstream.took(Date.now() - began);
      await delivery.ack();
      metrics.routed(outcome, delivery.record.acceptedAt);
      log.debug({ messageId: delivery.record.messageId, outcome, path: delivery.record.path, attempt: delivery.attempt }, "routed");
    } catch (err) {
      metrics.routeFailed();
      log.warn({ err, messageId: delivery.record.messageId, attempt: delivery.attempt }, "routing failed; the record goes back to the bus");
      await delivery.nack(err instanceof Error ? err.message : "routing failed").catch(() => {});
    } finally {
      inFlight--;
      settled++;
      counted();
    }
  }

  /** Resolves once the bus holds nothing unacked, or when the clock's share is spent. */
  async function routeBacklog(clock: DrainClock): Promise<void> {
    while (actor !== undefined && clock.until(0.75) > 0) {
      const { backlog } = await bus.stats().catch(() => ({ backlog: 0 }));
      if (backlog === 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops intake and resolves once in-flight work has settled (or the drain timed out). */
  async function stop(): Promise<void> {
    if (deps.drainBacklog) {
      await within(deps.intakeSettled?.() ?? Promise.resolve(), deps.drainBacklog.until(0.3));
      await routeBacklog(deps.drainBacklog);
    }
    tell();
    actor?.send({ type: "router.stop" });
    await stopped;
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
            return { state: snapshot?.value ?? "stopped", inFlight, routed: settled, bus: await bus.stats() };
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
            return explainRoute(ctx.params.urn, presence, (nodeID) => ctx.call<SessionView[], { urn: Urn }>("gateway.sessions", { urn: ctx.params.urn }, { nodeID }));
          }),
      },
    },
    async started() {
      const log = this.logger;
      let finish: () => void = () => {};
      stopped = new Promise<void>((resolve) => (finish = resolve));
      actor = createActor(
        routerMachine.provide({
          actions: {
            pauseIntake: () => subscription?.pause(),
            resumeIntake: () => subscription?.resume(),
            closeIntake: () => {
              subscription?.close().then(finish, finish);
            },
            stopped: () => {
              const abandoned = actor?.getSnapshot().context.abandoned ?? 0;
              if (abandoned > 0) log.warn({ abandoned }, "router drain timed out; unacked records return to the bus");
            },
          },
        }),
        { id: "router", input: { maxInFlight: deps.maxInFlight, drainTimeoutMs: deps.drainTimeoutMs } },
      ).start();
      subscription = bus.consume((delivery) => {
        inFlight++;
        counted();
        void work(delivery, log);
      });
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
