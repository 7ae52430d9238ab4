import { assign, fromPromise, setup } from "xstate";

/**
 * The presence actor: this instance's heartbeat. Every `heartbeatMs` it renews the TTL of all the
 * presence entries this instance holds (the store's `heartbeat`), one renewal at a time: a slow
 * store never stacks renewals. On `presence.stop` (the node stops, after every session closed) it
 * releases what is left of this instance at once, so no reader waits a TTL for a node that left on
 * purpose. Pure: `renew` and `release` are promise actors, and the log lines actions, all provided by
 * the host (`services/presence.service.ts`).
 *
 *   waiting --(after heartbeat)--> renewing --(done or failed)--> waiting
 *   either --presence.stop--> releasing --> released
 *
 * A failed renewal is retried at the next beat: entries live for the TTL (three beats by default),
 * so one failure loses nothing.
 */
export interface PresenceInput {
  readonly heartbeatMs: number;
}

export interface PresenceContext extends PresenceInput {
  renewals: number;
  failures: number;
}

export type PresenceEvent = { type: "presence.stop" };

export const presenceMachine = setup({
  types: {
    input: {} as PresenceInput,
    context: {} as PresenceContext,
    events: {} as PresenceEvent,
  },
  actors: {
    /** Refreshes every entry of this instance (PresenceStore.heartbeat). */
    renew: fromPromise<void>(async () => {}),
    /** Removes every entry of this instance (PresenceStore.release). */
    release: fromPromise<void>(async () => {}),
  },
  actions: {
    renewFailed: (_: unknown, _params: { error: unknown }) => {},
    releaseFailed: (_: unknown, _params: { error: unknown }) => {},
  },
  delays: {
    heartbeat: ({ context }) => context.heartbeatMs,
  },
}).createMachine({
  id: "presence",
  context: ({ input }) => ({ ...input, renewals: 0, failures: 0 }),
  initial: "waiting",
  states: {
    waiting: {
      after: { heartbeat: "renewing" },
      on: { "presence.stop": "releasing" },
    },
    renewing: {
      invoke: {
        src: "renew",
        onDone: { target: "waiting", actions: assign({ renewals: ({ context }) => context.renewals + 1 }) },
        onError: {
          target: "waiting",
          actions: [assign({ failures: ({ context }) => context.failures + 1 }), { type: "renewFailed", params: ({ event }) => ({ error: event.error }) }],
        },
      },
      on: { "presence.stop": "releasing" },
    },
    releasing: {
      invoke: {
        src: "release",
        onDone: "released",
        onError: { target: "released", actions: { type: "releaseFailed", params: ({ event }) => ({ error: event.error }) } },
      },
    },
    released: { type: "final" },
  },
});

export type PresenceMachine = typeof presenceMachine;
