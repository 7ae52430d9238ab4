import type { Context } from "moleculer";
import type { Gateway } from "../gateway/index.ts";
import type { SessionHost } from "../gateway/sessions.ts";
import type { Urn } from "../core/urn.ts";
import { within, type DrainClock, type IngressGate } from "../platform/drain.ts";
import type { PartSchema } from "../platform/lifecycle.ts";
import { listenWithFallback } from "../platform/ports.ts";

export interface GatewayServiceDeps {
  readonly gateway: Gateway;
  readonly sessions: SessionHost;
  readonly host: string;
  readonly port: number;
  readonly portExplicit: boolean;
  /** Receives the bound port once listening. */
  readonly onListening: (port: number) => void;
  /** The drain: sends already being accepted finish before the sessions close. */
  readonly gate: IngressGate;
  readonly clock: DrainClock;
}

/**
 * Hosts the HTTP + WebSocket gateway and exposes its live sessions to integrators and the REPL.
 *
 * The edge: started last and stopped first. The drain begins at once for the whole node (readiness
 * 503, upgrades and sends refused with SHUTTING_DOWN); the stop then lets the sends already being
 * accepted get their answer, drains every session (WebSocket: buffer flushed, close 1001; MQTT:
 * flushed, disconnected) and closes the listener.
 */
export function createGatewayService(deps: GatewayServiceDeps): PartSchema {
  return {
    name: "gateway",
    draining: () => deps.gateway.stopAccepting(),
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
    async stopped() {
      await within(deps.gate.settled(), deps.clock.until(0.3));
      // Their answers (202, `sent`) are written in the turn after the accept resolved.
      await new Promise((resolve) => setImmediate(resolve));
      await deps.sessions.drainAll(Math.max(100, deps.clock.until(0.5)));
      await deps.gateway.close();
    },
  };
}
