import type { EngineOptions, GatewayEngine } from "./engine.ts";
import { createUwsEngine } from "./uws-engine.ts";
import { createWsEngine } from "./ws-engine.ts";

/** The gateway's engine by name (ROUTING_GATEWAY_ENGINE): `uws` (native) or `ws` (portable). */
export function createEngine<C>(kind: "uws" | "ws", options: EngineOptions<C>): GatewayEngine {
  switch (kind) {
    case "uws":
      return createUwsEngine(options);
    case "ws":
      return createWsEngine(options);
  }
  throw new Error(`unknown gateway engine: ${kind as string}`);
}
