import { assign, fromCallback, sendTo, setup } from "xstate";
import type { ConsumerCommand } from "./consumer.ts";

/**
 * The router actor owns consumption of the ingress bus: it invokes the bus consumer as its child
 * actor (`consumer`, see consumer.ts: subscribe, route, ack or nack), which reports deliveries
 * started and settled; the machine keeps the in-flight count in context and decides when intake
 * pauses (full), resumes (below the low-water mark) and when a stop has drained. Pure: the
 * consumer logic and the log line of a stop are provided by the host (`services/router.service.ts`).
 *
 *   running <-> paused ; either --router.stop--> [route the backlog first] --> draining
 *     --(idle or drain timeout)--> stopped (the consumer child is closed: unacked records go back)
 *
 * `router.downstream.slow` / `router.downstream.caughtUp` (the consumer's measure of the mailbox
 * store and signals) shrink and restore the in-flight limit, so a slow store pauses intake sooner.
 */
export interface RouterInput {
  readonly maxInFlight: number;
  readonly drainTimeoutMs: number;
  /**
   * A stop first routes the bus's whole backlog (the consumer's `routeBacklog`), not only what is in
   * flight: for a bus only this process reads (embedded), where what is left would wait for this
   * node's next start. A shared bus leaves the rest to the other nodes.
   */
  readonly routeBacklogOnStop?: boolean;
}

export interface RouterContext extends RouterInput {
  inFlight: number;
  /** Resume once in-flight work falls to this (hysteresis, so intake does not flap). */
  resumeAt: number;
  started: number;
  settled: number;
  /** Deliveries still in flight when the drain timed out; the bus redelivers them. */
  abandoned: number;
  /**
   * The mailbox store or the signals fall behind (the host measures how long routing takes): intake
   * then works with an eighth of maxInFlight, pausing the bus consumer sooner, until they caught up.
   */
  downstreamSlow: boolean;
  /** A stop arrived; the consumer is routing the backlog before the drain. */
  stopping: boolean;
}

/** `count` (default 1): how many deliveries started or settled since the host last told. */
export type RouterEvent =
  | { type: "router.delivery.started"; count?: number }
  | { type: "router.delivery.settled"; count?: number }
  | { type: "router.downstream.slow" }
  | { type: "router.downstream.caughtUp" }
  | { type: "router.stop" }
  /** The consumer routed the backlog (or the drain's share of time ran out). */
  | { type: "router.backlog.routed" };

/** In-flight work allowed now: all of it, or an eighth while the store or signals fall behind. */
export function intakeLimit(context: Pick<RouterContext, "maxInFlight" | "downstreamSlow">): number {
  return context.downstreamSlow ? Math.max(1, Math.floor(context.maxInFlight / 8)) : context.maxInFlight;
}

export const routerMachine = setup({
  types: {
    input: {} as RouterInput,
    context: {} as RouterContext,
    events: {} as RouterEvent,
  },
  actions: {
    countStarted: assign(({ context, event }) => {
      const n = "count" in event ? (event.count ?? 1) : 1;
      return { inFlight: context.inFlight + n, started: context.started + n };
    }),
    countSettled: assign(({ context, event }) => {
      const n = "count" in event ? (event.count ?? 1) : 1;
      return { inFlight: context.inFlight - n, settled: context.settled + n };
    }),
    markSlow: assign({ downstreamSlow: true }),
    markCaughtUp: assign({ downstreamSlow: false }),
    pauseIntake: sendTo("consumer", { type: "router.intake.pause" } satisfies ConsumerCommand),
    resumeIntake: sendTo("consumer", { type: "router.intake.resume" } satisfies ConsumerCommand),
    routeBacklog: sendTo("consumer", { type: "router.intake.routeBacklog" } satisfies ConsumerCommand),
    /** Close the bus subscription: unacked deliveries go back to the bus (stopping the child closes it too). */
    closeIntake: sendTo("consumer", { type: "router.intake.close" } satisfies ConsumerCommand),
    /** The host's log line (how many deliveries a timed-out drain abandoned to the bus). */
    stopped: () => {},
  },
  actors: {
    /** The bus consumer (consumer.ts `busConsumer`); none by default, so the machine is testable alone. */
    consumer: fromCallback<ConsumerCommand>(() => {}),
  },
  guards: {
    routesBacklog: ({ context }) => context.routeBacklogOnStop === true && !context.stopping,
    full: ({ context }) => context.inFlight >= intakeLimit(context),
    lowWater: ({ context }) => context.inFlight <= (context.downstreamSlow ? Math.floor(intakeLimit(context) / 2) : context.resumeAt),
    idle: ({ context }) => context.inFlight === 0,
  },
  delays: {
    drainTimeout: ({ context }) => context.drainTimeoutMs,
  },
}).createMachine({
  id: "router",
  context: ({ input }) => ({
    ...input,
    inFlight: 0,
    resumeAt: Math.floor(input.maxInFlight / 2),
    started: 0,
    settled: 0,
    abandoned: 0,
    downstreamSlow: false,
    stopping: false,
  }),
  invoke: { id: "consumer", src: "consumer" },
  initial: "running",
  states: {
    running: {
      always: { guard: "full", target: "paused" },
      on: {
        "router.delivery.started": { actions: "countStarted" },
        "router.delivery.settled": { actions: "countSettled" },
        "router.downstream.slow": { actions: "markSlow" },
        "router.downstream.caughtUp": { actions: "markCaughtUp" },
        "router.stop": [{ guard: "routesBacklog", actions: [assign({ stopping: true }), "routeBacklog"] }, { target: "draining" }],
        "router.backlog.routed": "draining",
      },
    },
    paused: {
      entry: "pauseIntake",
      exit: "resumeIntake",
      always: { guard: "lowWater", target: "running" },
      on: {
        // The bus may hand out a few already-dispatched deliveries after a pause.
        "router.delivery.started": { actions: "countStarted" },
        "router.delivery.settled": { actions: "countSettled" },
        "router.downstream.slow": { actions: "markSlow" },
        "router.downstream.caughtUp": { actions: "markCaughtUp" },
        "router.stop": [{ guard: "routesBacklog", actions: [assign({ stopping: true }), "routeBacklog"] }, { target: "draining" }],
        "router.backlog.routed": "draining",
      },
    },
    draining: {
      entry: "pauseIntake",
      always: { guard: "idle", target: "stopped" },
      after: { drainTimeout: { target: "stopped", actions: assign({ abandoned: ({ context }) => context.inFlight }) } },
      on: {
        "router.delivery.started": { actions: "countStarted" },
        "router.delivery.settled": { actions: "countSettled" },
      },
    },
    stopped: { type: "final", entry: ["closeIntake", "stopped"] },
  },
});

export type RouterMachine = typeof routerMachine;
