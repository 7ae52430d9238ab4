import { createExternalLink } from "../broker/external.ts";
import { withExternalDelivery } from "../broker/external-routing.ts";
import { createMqttIngest } from "../broker/ingest.ts";
import { mqttTopics } from "../broker/topics.ts";
import type { ExplicitSettings } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createRouter } from "../routing/router.ts";
import { createLocalSignalBridge } from "../routing/signals.ts";
import { createBridgeService } from "../services/bridge.service.ts";
import { createOpsService } from "../services/ops.service.ts";
import { createRouterService } from "../services/router.service.ts";
import { compose } from "./compose.ts";

export interface MqttBridgeNode {
  readonly httpPort: number;
  /** The one way down, as for the node: drain, then `broker.stop()`. */
  shutdown(): Promise<void>;
}

/**
 * The `mqtt-bridge` role (`npm run start:mqtt-bridge`), composed by the same root as the node: a
 * member of the external broker's share group that ingests onto the configured bus, with
 * /healthz, /readyz and /metrics but no HTTP API or WebSocket of its own.
 *
 * With a shared bus (nats, pubsub) it only ingests: the routing nodes route, and publish the
 * deliveries to the broker. With the embedded bus nobody else can read its bus, so it also routes
 * what it ingested (into its own store) and publishes those deliveries itself: then it is a
 * self-contained MQTT routing instance, and push notifications due for its recipients wait in its
 * own push queue (no push sender runs here).
 *
 * Stop order: router (if any), then the link (leaves the group, finishes what it ingests), then
 * the health server, then ingress, mailbox, backends.
 */
export async function startMqttBridge(config: Config, explicit: ExplicitSettings): Promise<MqttBridgeNode> {
  const url = config.mqttUrl;
  if (url === undefined) throw new Error("the MQTT bridge needs ROUTING_MQTT_URL (the external broker it consumes)");
  let httpPort = 0;
  const composed = await compose(
    config,
    explicit,
    {},
    {
      name: "mqtt-bridge",
      closeIntakeAtDrain: false,
      // Not a cluster member: its router service (embedded bus) serves only this process.
      transporter: () => null,
      quota: false,
    },
    ({ backends, metrics, gate, clock, log, add }) => {
      const link = createExternalLink({
        url,
        clientId: `routing-bridge-${config.instanceId}`,
        topics: mqttTopics({ ingest: config.mqttIngestTopic, receive: config.mqttReceiveTopic, ack: config.mqttAckTopic }),
        shareGroup: config.mqttShareGroup,
        ingest: createMqttIngest({ ingress: gate.ingress, mailbox: backends.mailbox, log }),
        connectTimeoutMs: config.authTimeoutMs,
        log,
      });
      const routes = config.bus === "embedded";
      if (routes) {
        const router = createRouterService({
          bus: backends.bus,
          busName: config.bus,
          route: createRouter({
            mailbox: backends.mailbox,
            pushQueue: backends.pushQueue,
            // No sessions live here: every delivery goes to the broker.
            ...withExternalDelivery({ presence: backends.presence, signals: createLocalSignalBridge({ deliver: () => 0 }) }, link.publish),
          }),
          metrics,
          maxInFlight: config.routerMaxInFlight,
          drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 4),
          drainBacklog: clock,
          intakeSettled: gate.settled,
        });
        add(router.schema, ["backends", "mailbox", "bridge"]);
      }
      add(
        createOpsService({
          metrics,
          ready: async () => link.connected() && (await backends.ready()),
          host: config.host,
          port: config.httpPort,
          portExplicit: explicit.has("httpPort"),
          onListening: (p) => (httpPort = p),
        }),
        ["backends"],
      );
      // The health server starts before the link and stops after it: liveness answers through the drain.
      add(createBridgeService({ link }), ["ingress", "mailbox", "ops"]);
      return () =>
        `routing ready: http=${httpPort} mqtt=external role=mqtt-bridge routes=${routes} bus=${config.bus} store=${config.store} instance=${config.instanceId}`;
    },
  );
  return {
    get httpPort() {
      return httpPort;
    },
    shutdown: () => composed.stop(),
  };
}
