import type { Context, ServiceSchema } from "moleculer";
import type { Gateway } from "../gateway/index.ts";
import type { SessionHost } from "../gateway/sessions.ts";
import type { Urn } from "../core/urn.ts";
import { listenWithFallback } from "../runtime/ports.ts";

export interface GatewayServiceDeps {
  readonly gateway: Gateway;
  readonly sessions: SessionHost;
  readonly host: string;
  readonly port: number;
  readonly portExplicit: boolean;
  /** Receives the bound port once listening. */
  readonly onListening: (port: number) => void;
}

/** Hosts the HTTP + WebSocket gateway and exposes its live sessions to integrators and the REPL. */
export function createGatewayService(deps: GatewayServiceDeps): ServiceSchema {
  return {
    name: "gateway",
    settings: { engine: deps.gateway.engine.name },
    actions: {
      sessions: {
        params: { urn: { type: "string", optional: true } },
        handler: (ctx: Context<{ urn?: string }>) =>
          deps.sessions.sessions(ctx.params.urn as Urn | undefined).map((s) => ({
            id: s.id,
            identity: s.identity,
            protocol: s.protocol,
            mode: s.mode,
            state: s.actor.getSnapshot().value,
            connectedAt: new Date(s.connectedAt).toISOString(),
            bufferedBytes: s.transport.bufferedAmount(),
          })),
      },
    },
    async started() {
      const port = await listenWithFallback("http", (p) => deps.gateway.listen(deps.host, p), deps.port, deps.portExplicit, this.logger);
      deps.onListening(port);
    },
  };
}
