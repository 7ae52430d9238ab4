import type { Context, ServiceSchema } from "moleculer";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { mapped } from "./errors.ts";
import { urnParam as urn } from "./mailbox.service.ts";

/**
 * Hosts presence: this instance's heartbeat keeps its sessions' entries alive. It stops after the
 * gateway, MQTT and the router (they depend on it): by then every session has closed and removed
 * its entry; `release` then removes whatever is left of this instance at once (a removal that
 * failed), so no reader waits a TTL for a node that left on purpose.
 */
export function createPresenceService(deps: { presence: PresenceStore; instanceId: string; heartbeatMs: number }): ServiceSchema {
  let timer: NodeJS.Timeout | undefined;
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
      timer = setInterval(() => {
        deps.presence.heartbeat(deps.instanceId).catch((err: unknown) => this.logger.warn({ err }, "presence heartbeat failed"));
      }, deps.heartbeatMs);
      timer.unref();
    },
    async stopped() {
      clearInterval(timer);
      await deps.presence.release(deps.instanceId).catch((err: unknown) => this.logger.warn({ err }, "presence release failed; the entries expire with the TTL"));
    },
  };
}
