import type { Config } from "./schema.ts";

/**
 * The embedded default: one node, every role on SQLite in the data dir, no external backend and
 * no cluster. Dev conveniences (the dev VAPID key pair, the demo page) are on by default only here.
 */
export function isEmbeddedDefault(config: Pick<Config, "bus" | "store" | "deviceStore" | "presence" | "signals" | "transporter">): boolean {
  return (
    config.bus === "embedded" &&
    config.store === "embedded" &&
    config.deviceStore === "embedded" &&
    config.presence === "memory" &&
    config.signals === "local" &&
    config.transporter === undefined
  );
}
