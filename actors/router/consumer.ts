import { fromCallback } from "xstate";
import type { BusSubscription, Delivery, IngressBus } from "../../backends/ingress-bus.ts";
import type { RouteOutcome } from "../../metrics/registry.ts";

/**
 * The router actor's child: the ingress bus consumer. It holds the bus subscription, routes each
 * delivery with the injected `route`, acks it once routing's durable work is done and nacks it
 * (redelivery, then dead letter) when routing failed. It tells its parent how many deliveries
 * started and settled; the parent decides when intake pauses and resumes (commands below).
 *
 * Telling the parent every start and settle cost two XState macrosteps per message, a fifth of the
 * routing path's CPU (README, "Performance"). So it sends the net change as one event per
 * event-loop turn, and at once when a start brings the count to the limit while intake runs (so
 * intake pauses before the bus hands out more). Resuming, or finishing a drain, one turn later
 * changes nothing that matters. The exact counts `router.stats` reports are kept here.
 */
export type ConsumerCommand =
  | { type: "router.intake.pause" }
  | { type: "router.intake.resume" }
  /** Route the bus's whole backlog first (a bus only this process reads); answered with router.backlog.routed. */
  | { type: "router.intake.routeBacklog" }
  /** Close the subscription: unacked deliveries go back to the bus. */
  | { type: "router.intake.close" };

/** What the consumer tells its parent. */
export type ConsumerReport =
  { type: "router.delivery.started"; count?: number } | { type: "router.delivery.settled"; count?: number } | { type: "router.backlog.routed" };

export interface BusConsumerEffects {
  readonly bus: IngressBus;
  readonly route: (record: Delivery["record"]) => Promise<RouteOutcome>;
  readonly maxInFlight: number;
  /** Routing took `ms`: the host's downstream watch, which tells the router actor when the store or signals fall behind. */
  readonly took: (ms: number) => void;
  /** A record was routed and acked (metrics, a debug line: ids only, never payload bytes). */
  readonly routed: (delivery: Delivery, outcome: RouteOutcome) => void;
  /** Routing failed; the record goes back to the bus. */
  readonly failed: (delivery: Delivery, err: unknown) => void;
  /** Resolves once the bus holds nothing unacked, or the drain's share of time is spent. */
  readonly routeBacklog: () => Promise<void>;
  /** The subscription closed (after router.intake.close or the actor stopping). */
  readonly closed: () => void;
}

/** The exact counts, read by `router.stats`. */
export interface ConsumerCounts {
  inFlight: number;
  settled: number;
}

/** The consumer's logic, to give the router machine with `provide({ actors: { consumer } })`. */
export function busConsumer(effects: BusConsumerEffects, counts: ConsumerCounts = { inFlight: 0, settled: 0 }) {
  return fromCallback<ConsumerCommand>(({ sendBack, receive }) => {
    let told = counts.inFlight;
    let paused = false;
    let syncScheduled = false;
    let closing: Promise<void> | undefined;

    function tell(): void {
      const delta = counts.inFlight - told;
      told = counts.inFlight;
      if (delta > 0) sendBack({ type: "router.delivery.started", count: delta });
      else if (delta < 0) sendBack({ type: "router.delivery.settled", count: -delta });
    }

    function counted(): void {
      if (closing !== undefined) return;
      if (counts.inFlight >= effects.maxInFlight && !paused) return tell();
      if (syncScheduled) return;
      syncScheduled = true;
      setImmediate(() => {
        syncScheduled = false;
        if (closing === undefined) tell();
      });
    }

    async function work(delivery: Delivery): Promise<void> {
      try {
        const began = Date.now();
        const outcome = await effects.route(delivery.record);
        effects.took(Date.now() - began);
        await delivery.ack();
        effects.routed(delivery, outcome);
      } catch (err) {
        effects.failed(delivery, err);
        await delivery.nack(err instanceof Error ? err.message : "routing failed").catch(() => {});
      } finally {
        counts.inFlight--;
        counts.settled++;
        counted();
      }
    }

    const subscription: BusSubscription = effects.bus.consume((delivery) => {
      counts.inFlight++;
      counted();
      void work(delivery);
    });

    function close(): Promise<void> {
      closing ??= subscription.close().then(effects.closed, effects.closed);
      return closing;
    }

    receive((command) => {
      switch (command.type) {
        case "router.intake.pause":
          paused = true;
          subscription.pause();
          // The parent decides a drain from exact counts: give it this turn's change now.
          tell();
          return;
        case "router.intake.resume":
          paused = false;
          subscription.resume();
          return;
        case "router.intake.routeBacklog":
          tell();
          void effects.routeBacklog().finally(() => sendBack({ type: "router.backlog.routed" }));
          return;
        case "router.intake.close":
          void close();
          return;
      }
    });
    return () => void close();
  });
}
