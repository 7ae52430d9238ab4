import { assign, setup } from "xstate";

/**
 * The router's intake governor: bounded in-flight work over the ingress bus. The hosting service
 * tells it when a delivery starts and settles; the machine decides when intake pauses (full),
 * resumes (below the low-water mark) and when a stop has drained. Pure: pausing the bus
 * subscription and finishing the stop are injected actions.
 *
 *   running <-> paused ; either --router.stop--> draining --(idle or timeout)--> stopped
 *
 * `router.downstream.slow` / `router.downstream.caughtUp` (the host's measure of the mailbox store
 * and signals) shrink and restore the in-flight limit, so a slow store pauses the consumer sooner.
 */
export interface RouterInput {
  readonly maxInFlight: number;
  readonly drainTimeoutMs: number;
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
}

/** `count` (default 1): how many deliveries started or settled since the host last told. */
export type RouterEvent =
  | { type: "router.delivery.started"; count?: number }
  | { type: "router.delivery.settled"; count?: number }
  | { type: "router.downstream.slow" }
  | { type: "router.downstream.caughtUp" }
  | { type: "router.stop" };

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
    pauseIntake: () => {},
    resumeIntake: () => {},
    /** Close the bus subscription: unacked deliveries go back to the bus. */
    closeIntake: () => {},
    stopped: () => {},
  },
  guards: {
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
  }),
  initial: "running",
  states: {
    running: {
      always: { guard: "full", target: "paused" },
      on: {
        "router.delivery.started": { actions: "countStarted" },
        "router.delivery.settled": { actions: "countSettled" },
        "router.downstream.slow": { actions: "markSlow" },
        "router.downstream.caughtUp": { actions: "markCaughtUp" },
        "router.stop": "draining",
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
        "router.stop": "draining",
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
