import type { SignalBridge } from "../routing/signals.ts";
import type { PartSchema } from "../platform/lifecycle.ts";

/**
 * Owns the signal bridge between nodes (core NATS subjects or Pub/Sub topics; local on one node).
 * The router and the sessions use it, so it closes after both have stopped.
 */
export function createSignalsService(deps: { signals: SignalBridge }): PartSchema {
  return {
    name: "signals",
    async stopped() {
      await deps.signals.close();
    },
  };
}
