import { assign, setup, type ActorRefFrom } from "xstate";

/**
 * The ownership of one shard by this node. Pure: reading and writing the lease are injected
 * actions whose outcome the hosting coordinator (shards/coordinator.ts) reports as events.
 *
 *   standby --assigned--> acquiring --acquired--> owning --unassigned / stop--> releasing --> standby
 *                            |  taken / failed        |  lost (a renewal found another holder)
 *                            v                        v
 *                         standby                  standby
 *
 *   owning.valid: renews every `renewEveryMs` (retrying every `retryEveryMs` when the engine fails);
 *   each successful renewal re-enters `valid`, restarting the lapse timer at the `validForMs` the
 *   host measured from the moment it SENT the request. When that timer runs out the node stops
 *   acting as owner, whether or not the engine can be reached: the engine cannot grant the shard
 *   to another node before then.
 *
 * `owned` runs on entering `owning`, `unowned` on leaving it, so the node stops acting as owner
 * before a release is even sent.
 */
export interface ShardInput {
  readonly shard: number;
  readonly renewEveryMs: number;
  readonly retryEveryMs: number;
}

export interface ShardContext extends ShardInput {
  /** The fencing epoch of the lease while owning (and while releasing it). */
  epoch: number | undefined;
  /** How long the lease is still valid by the local clock, from the last acquire/renewal answer. */
  validForMs: number;
  /** A stop came: go to `stopped` instead of `standby` once the lease is released. */
  stopping: boolean;
}

export type ShardEvent =
  /** Rendezvous hashing names this node and the shard looks free: try to take it. */
  | { type: "shard.assigned" }
  /** The engine granted the lease; `validForMs` measured from when the request was sent. */
  | { type: "shard.acquired"; epoch: number; validForMs: number }
  /** Another node holds the lease. */
  | { type: "shard.taken" }
  | { type: "shard.renewed"; validForMs: number }
  /** A renewal found the lease gone or held by another epoch. */
  | { type: "shard.lost" }
  /** The engine could not be reached (or answered an error). */
  | { type: "shard.failed" }
  /** Rendezvous hashing now names another live node: hand the shard over. */
  | { type: "shard.unassigned" }
  | { type: "shard.released" }
  /** The node is draining: release and stop. */
  | { type: "shard.stop" };

export const shardMachine = setup({
  types: {
    input: {} as ShardInput,
    context: {} as ShardContext,
    events: {} as ShardEvent,
  },
  actions: {
    /** Ask the engine for the lease; the host answers shard.acquired, shard.taken or shard.failed. */
    acquire: (_, _params: { shard: number }) => {},
    /** Renew the lease; the host answers shard.renewed, shard.lost or shard.failed. */
    renew: (_, _params: { shard: number; epoch: number }) => {},
    /** Release the lease; the host answers shard.released or shard.failed. */
    release: (_, _params: { shard: number; epoch: number }) => {},
    /** This node now acts as the shard's owner at `epoch`. */
    owned: (_, _params: { shard: number; epoch: number }) => {},
    /** This node no longer acts as the shard's owner. */
    unowned: (_, _params: { shard: number }) => {},
  },
  guards: {
    stillValid: ({ event }) => event.type === "shard.acquired" && event.validForMs > 0,
    stopping: ({ context }) => context.stopping,
  },
  delays: {
    renewEvery: ({ context }) => context.renewEveryMs,
    retryEvery: ({ context }) => context.retryEveryMs,
    lapse: ({ context }) => Math.max(0, context.validForMs),
  },
}).createMachine({
  id: "shard",
  context: ({ input }) => ({ ...input, epoch: undefined, validForMs: 0, stopping: false }),
  initial: "standby",
  states: {
    standby: {
      entry: assign({ epoch: undefined }),
      always: { guard: "stopping", target: "stopped" },
      on: {
        "shard.assigned": "acquiring",
        "shard.stop": "stopped",
      },
    },
    acquiring: {
      entry: { type: "acquire", params: ({ context }) => ({ shard: context.shard }) },
      on: {
        "shard.acquired": [
          // Stopped while asking: give the lease straight back (standby then ends in stopped).
          {
            guard: "stopping",
            target: "standby",
            actions: { type: "release", params: ({ context, event }) => ({ shard: context.shard, epoch: event.epoch }) },
          },
          { guard: "stillValid", target: "owning", actions: assign({ epoch: ({ event }) => event.epoch, validForMs: ({ event }) => event.validForMs }) },
          // The answer came too late to act on: give the lease back rather than let it block others.
          { target: "standby", actions: { type: "release", params: ({ context, event }) => ({ shard: context.shard, epoch: event.epoch }) } },
        ],
        "shard.taken": "standby",
        "shard.failed": "standby",
        "shard.stop": { actions: assign({ stopping: true }) },
      },
    },
    owning: {
      entry: { type: "owned", params: ({ context }) => ({ shard: context.shard, epoch: context.epoch ?? 0 }) },
      exit: { type: "unowned", params: ({ context }) => ({ shard: context.shard }) },
      initial: "valid",
      states: {
        valid: {
          after: { lapse: "#shard.standby" },
          initial: "waiting",
          on: {
            "shard.renewed": { target: "valid", reenter: true, actions: assign({ validForMs: ({ event }) => event.validForMs }) },
          },
          states: {
            waiting: { after: { renewEvery: "renewing" } },
            renewing: {
              entry: { type: "renew", params: ({ context }) => ({ shard: context.shard, epoch: context.epoch ?? 0 }) },
              on: { "shard.failed": "retrying" },
            },
            retrying: { after: { retryEvery: "renewing" } },
          },
        },
      },
      on: {
        "shard.lost": "standby",
        "shard.unassigned": "releasing",
        "shard.stop": { target: "releasing", actions: assign({ stopping: true }) },
      },
    },
    releasing: {
      entry: { type: "release", params: ({ context }) => ({ shard: context.shard, epoch: context.epoch ?? 0 }) },
      on: {
        // A failed release lapses by TTL instead.
        "shard.released": "standby",
        "shard.failed": "standby",
        "shard.stop": { actions: assign({ stopping: true }) },
      },
    },
    stopped: { type: "final" },
  },
});

export type ShardMachine = typeof shardMachine;
export type ShardActor = ActorRefFrom<ShardMachine>;
