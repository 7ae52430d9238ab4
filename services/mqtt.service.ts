import type { MqttRuntime } from "../broker/index.ts";
import type { PartSchema } from "../platform/lifecycle.ts";

/**
 * Owns MQTT: the embedded aedes broker (TCP listener and MQTT over WebSocket), or this node's
 * membership in an external broker's share group. Started before the gateway (which serves the
 * WebSocket route) and the router (which, with an external broker, publishes deliveries there);
 * stopped after both, so routing in flight can still publish.
 *
 * Drain: new CONNECTs are refused (CONNACK 3) and new publishes disconnect at once; the sessions
 * drain with the gateway's; at stop every remaining client is disconnected (aedes 1.2 speaks MQTT
 * 3.1.1, where a server cannot send DISCONNECT: the server closes the network connection after
 * flushing what is queued, which 3.1.1 clients treat as "reconnect").
 */
export function createMqttService(deps: { mqtt: MqttRuntime; onStarted: (readyPart: string) => void }): PartSchema {
  return {
    name: "mqtt",
    draining: () => deps.mqtt.stopAccepting(),
    async started() {
      deps.onStarted(await deps.mqtt.start());
    },
    async stopped() {
      await deps.mqtt.close();
    },
  };
}
