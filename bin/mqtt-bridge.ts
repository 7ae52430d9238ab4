/**
 * `npm run start:mqtt-bridge`: a member of the external MQTT broker's share group (ROUTING_MQTT_URL
 * required) that ingests what MQTT clients publish there. Same configuration as `npm start`.
 */
import { ConfigError, loadConfig } from "../config/load.ts";
import { startMqttBridge } from "../broker/bridge-node.ts";

async function main(): Promise<void> {
  const { config, explicit } = loadConfig();
  const bridge = await startMqttBridge(config, explicit);
  let signals = 0;
  const stop = (signal: string): void => {
    if (++signals > 1) process.exit(1);
    const force = setTimeout(() => {
      console.error(`shutdown took longer than ${config.shutdownTimeoutMs} ms; exiting`);
      process.exit(1);
    }, config.shutdownTimeoutMs + 1000);
    force.unref();
    console.error(`${signal}: leaving the share group and draining`);
    bridge.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error("shutdown failed", err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : `start-up failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
