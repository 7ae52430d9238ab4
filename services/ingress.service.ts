import type { Context } from "moleculer";
import type { Urn } from "../core/urn.ts";
import { isUrn } from "../core/urn.ts";
import { RoutingError } from "../core/errors.ts";
import type { Ingress } from "../routing/ingress.ts";
import type { IngressGate } from "../platform/drain.ts";
import { within, type DrainClock } from "../platform/drain.ts";
import type { PartSchema } from "../platform/lifecycle.ts";
import { mapped } from "./errors.ts";

/**
 * Validates, stamps and publishes envelopes onto the ingress bus; the gateway and MQTT broker use the
 * same Ingress directly. With a gate (a node's runtime), the drain closes it at once (every path
 * refuses new sends with SHUTTING_DOWN) and the stop waits for the sends already being accepted.
 */
export function createIngressService(deps: { ingress: Ingress; gate?: IngressGate; clock?: DrainClock; closeAtDrain?: boolean }): PartSchema {
  return {
    name: "ingress",
    draining: () => {
      if (deps.closeAtDrain ?? true) deps.gate?.close();
    },
    async stopped() {
      deps.gate?.close();
      if (deps.gate) await within(deps.gate.settled(), deps.clock?.until(0.9) ?? 0);
    },
    actions: {
      accept: {
        params: { envelope: "object", identity: "string" },
        handler: (ctx: Context<{ envelope: object; identity: string }>) =>
          mapped(async () => {
            if (!isUrn(ctx.params.identity)) throw new RoutingError("INVALID_IDENTITY", "identity must be a URN");
            return { messageId: await deps.ingress.accept(ctx.params.envelope, ctx.params.identity as Urn, "action") };
          }),
      },
    },
  };
}
