import { assign, setup } from "xstate";
import { retryDelayMs } from "../../backends/ingress-bus.ts";

/**
 * The push sender loop: one batch at a time, taken from the push queue, sent, and back for more
 * until the queue has nothing due. Pure: taking a batch and sending it are injected actions whose
 * outcome the hosting service reports as events.
 *
 *   idle --queue.changed--> draining --taken(n>0)--> sending --done--> draining ...
 *   draining --taken(0)--> idle, or backoff when only retries are left (until the first is due;
 *            a queue change ends that wait)
 *   sending --done with retries and nothing settled, or failed--> backoff --after--> draining
 *   push.stop: idle/backoff stop at once; a take or send in progress finishes first (stopping)
 */
export interface PushInput {
  /** First backoff after a batch that made no progress; doubles per such batch (max 30 s). */
  readonly retryBaseMs: number;
  /** How long a stop waits for the batch in progress. */
  readonly drainTimeoutMs: number;
}

export interface PushContext extends PushInput {
  /** Batches in a row that made no progress (reset by one that did). */
  failures: number;
  /** The current backoff's length. */
  waitMs: number;
  /** The queue changed while a take was reading it: take again instead of idling. */
  changedWhileTaking: boolean;
  batches: number;
}

export type PushEvent =
  | { type: "push.queue.changed" }
  /** `retryInMs`: nothing else is due, but a retry is, this much later. */
  | { type: "push.batch.taken"; count: number; retryInMs?: number }
  /** `settled`: pushes completed or dead-lettered; `retried`: pushes left in the queue for later. */
  | { type: "push.batch.done"; settled: number; retried: number }
  /** A take or send failed as a whole (a backend unavailable). */
  | { type: "push.batch.failed" }
  | { type: "push.stop" };

export const pushMachine = setup({
  types: {
    input: {} as PushInput,
    context: {} as PushContext,
    events: {} as PushEvent,
  },
  actions: {
    /** Read the next batch of due pushes; the host answers push.batch.taken or push.batch.failed. */
    takeBatch: () => {},
    /** Send the batch just taken; the host answers push.batch.done or push.batch.failed. */
    sendBatch: () => {},
    stopped: () => {},
    noteChange: assign({ changedWhileTaking: true }),
    backOff: assign(({ context }) => ({ failures: context.failures + 1, waitMs: retryDelayMs(context.retryBaseMs, context.failures + 1) })),
  },
  guards: {
    gotWork: ({ event }) => event.type === "push.batch.taken" && event.count > 0,
    retryPending: ({ event }) => event.type === "push.batch.taken" && event.retryInMs !== undefined,
    changedWhileTaking: ({ context }) => context.changedWhileTaking,
    healthy: ({ context }) => context.failures === 0,
    noProgress: ({ event }) => event.type === "push.batch.done" && event.retried > 0 && event.settled === 0,
  },
  delays: {
    wait: ({ context }) => context.waitMs,
    drainTimeout: ({ context }) => context.drainTimeoutMs,
  },
}).createMachine({
  id: "push",
  context: ({ input }) => ({ ...input, failures: 0, waitMs: 0, changedWhileTaking: false, batches: 0 }),
  initial: "idle",
  states: {
    idle: {
      entry: assign({ failures: 0 }),
      on: {
        "push.queue.changed": "draining",
        "push.stop": "stopped",
      },
    },
    draining: {
      entry: [assign({ changedWhileTaking: false }), "takeBatch"],
      on: {
        "push.queue.changed": { actions: "noteChange" },
        "push.batch.taken": [
          { guard: "gotWork", target: "sending" },
          { guard: "changedWhileTaking", target: "draining", reenter: true },
          { guard: "retryPending", target: "backoff", actions: assign({ waitMs: ({ event }) => event.retryInMs ?? 0 }) },
          { target: "idle" },
        ],
        "push.batch.failed": { target: "backoff", actions: "backOff" },
        "push.stop": "stopping",
      },
    },
    sending: {
      entry: [assign({ batches: ({ context }) => context.batches + 1 }), "sendBatch"],
      on: {
        "push.batch.done": [
          { guard: "noProgress", target: "backoff", actions: "backOff" },
          { target: "draining", actions: assign({ failures: 0 }) },
        ],
        "push.batch.failed": { target: "backoff", actions: "backOff" },
        "push.stop": "stopping",
      },
    },
    backoff: {
      after: { wait: "draining" },
      on: {
        // Waiting for a scheduled retry only: new pushes need not wait. After a batch that made no
        // progress (provider or backend trouble) they do.
        "push.queue.changed": { guard: "healthy", target: "draining" },
        "push.stop": "stopped",
      },
    },
    stopping: {
      after: { drainTimeout: "stopped" },
      on: {
        "push.batch.taken": "stopped",
        "push.batch.done": "stopped",
        "push.batch.failed": "stopped",
      },
    },
    stopped: { type: "final", entry: "stopped" },
  },
});

export type PushMachine = typeof pushMachine;
