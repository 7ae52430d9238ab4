import type { Context, ServiceSchema } from "moleculer";
import type { Urn } from "../core/urn.ts";
import { isUrn } from "../core/urn.ts";
import { RoutingError } from "../core/errors.ts";
import type { Ingress } from "../routing/ingress.ts";
import { mapped } from "./errors.ts";

/** Validates, stamps and publishes envelopes onto the ingress bus; the gateway and MQTT broker use the same Ingress directly. */
export function createIngressService(deps: { ingress: Ingress }): ServiceSchema {
  return {
    name: "ingress",
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
