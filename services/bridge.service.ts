import type { ExternalLink } from "../broker/external.ts";
import type { PartSchema } from "../platform/lifecycle.ts";

/**
 * The `mqtt-bridge` role's link to the external MQTT broker: a member of the ingest and ack share
 * groups that ingests onto the bus. With the embedded bus the bridge's own router publishes
 * deliveries through this link, so the router depends on it and stops first. Stopping leaves the
 * group, lets publishes being ingested finish (their PUBACK goes out), then ends the session.
 */
export function createBridgeService(deps: { link: ExternalLink }): PartSchema {
  return {
    name: "bridge",
    async started() {
      await deps.link.start();
    },
    async stopped() {
      await deps.link.close();
    },
  };
}
