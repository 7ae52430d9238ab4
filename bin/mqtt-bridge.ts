/**
 * `npm run start:mqtt-bridge`: a member of the external MQTT broker's share group (ROUTING_MQTT_URL
 * required) that ingests what MQTT clients publish there. Same configuration as `npm start`.
 */
import { startMqttBridge } from "../runtime/bridge.ts";
import { runProcess } from "../runtime/process.ts";

runProcess(async (config, explicit) => {
  const bridge = await startMqttBridge(config, explicit);
  return { shutdown: () => bridge.shutdown(), log: (message) => console.error(message) };
}, "leaving the share group and draining");
