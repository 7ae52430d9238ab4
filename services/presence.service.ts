import type { Context, ServiceSchema } from "moleculer";
import { createActor, fromPromise, toPromise } from "xstate";
import { presenceMachine } from "../actors/presence/machine.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { mapped } from "./errors.ts";
import { urnParam as urn } from "./mailbox.service.ts";

/** The beat never holds the process open on its own (as the interval it replaced was unref'd). */
const unrefClock = {
  setTimeout: (fn: (...args: unknown[]) => void, ms: number) => setTimeout(fn, ms).unref(),
  clearTimeout: (id: unknown) => clearTimeout(id as NodeJS.Timeout),
};

/**
 * Hosts the presence actor (actors/presence/machine.ts), which keeps this instance's sessions'
 * entries alive. It stops after the gateway, MQTT and the router (they depend on it): by then every
 * session has closed and removed its entry; the actor then releases whatever is left of this
 * instance at once (a removal that failed), so no reader waits a TTL for a node that left on purpose.
 */
export function createPresenceService(deps: { presence: PresenceStore; instanceId: string; heartbeatMs: number }): ServiceSchema {
  let stop: () => Promise<void> = async () => {};
  return {
    name: "presence",
    actions: {
      get: {
        params: { urn },
        handler: (ctx: Context<{ urn: Urn }>) =>
          mapped(async () => (await deps.presence.get(ctx.params.urn)).map((e) => ({ ...e, connectedAt: new Date(e.connectedAt).toISOString() }))),
      },
    },
    async started() {
      const log = this.logger;
      const actor = createActor(
        presenceMachine.provide({
          actors: {
            renew: fromPromise(() => deps.presence.heartbeat(deps.instanceId)),
            release: fromPromise(() => deps.presence.release(deps.instanceId)),
          },
          actions: {
            renewFailed: (_, { error }) => log.warn({ err: error }, "presence heartbeat failed"),
            releaseFailed: (_, { error }) => log.warn({ err: error }, "presence release failed; the entries expire with the TTL"),
          },
        }),
        { id: "presence", input: { heartbeatMs: deps.heartbeatMs }, clock: unrefClock },
      ).start();
      stop = async () => {
        actor.send({ type: "presence.stop" });
        await toPromise(actor);
      };
    },
    async stopped() {
      await stop();
    },
  };
}
