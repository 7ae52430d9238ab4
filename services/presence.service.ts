import type { Context, ServiceSchema } from "moleculer";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { mapped } from "./errors.ts";
import { urnParam as urn } from "./mailbox.service.ts";

/** Hosts presence: this instance's heartbeat keeps its sessions' entries alive. */
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
    },
  };
}
