import http from "node:http";
import { ServiceBroker } from "moleculer";
import brokerConfig from "../moleculer.config.ts";
import { createBackends } from "../backends/factory.ts";
import type { ExplicitSettings } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createMetrics, type Metrics } from "../metrics/registry.ts";
import { createIngress } from "../routing/ingress.ts";
import { createRouter } from "../routing/router.ts";
import { createLocalSignalBridge } from "../routing/signals.ts";
import { listenServer, listenWithFallback } from "../runtime/ports.ts";
import { createRouterService } from "../services/router.service.ts";
import { createExternalLink } from "./external.ts";
import { withExternalDelivery } from "./external-routing.ts";
import { createMqttIngest } from "./ingest.ts";
import { mqttTopics } from "./topics.ts";
import { lockDataDir } from "../runtime/data-dir-lock.ts";
import { brokerLogger } from "../runtime/logger.ts";

export interface MqttBridgeNode {
  readonly httpPort: number;
  /** Leaves the share group, finishes in-flight work, closes backends. */
  shutdown(): Promise<void>;
}

/** /healthz, /readyz and /metrics: what an orchestrator and Prometheus need of a headless process. */
function createOpsServer(metrics: Metrics, ready: () => Promise<boolean>): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const answer = (status: number, body: string, type = "application/json"): void => {
      res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (path === "/healthz") return answer(200, '{"status":"ok"}');
    if (path === "/readyz") {
      void ready().then((ok) => answer(ok ? 200 : 503, ok ? '{"status":"ready"}' : '{"status":"not ready"}'), () => answer(503, '{"status":"not ready"}'));
      return;
    }
    if (path === "/metrics") {
      void metrics.scrape().then((text) => answer(200, text, metrics.registry.contentType));
      return;
    }
    answer(404, '{"error":{"code":"NOT_FOUND","message":"no such route"}}');
  });
}


/**
 * The `mqtt-bridge` role (`npm run start:mqtt-bridge`): a member of the external broker's share
 * group that ingests onto the configured bus, with no HTTP API or WebSocket of its own.
 *
 * With a shared bus (nats, pubsub) it only ingests: the routing nodes route, and publish the
 * deliveries to the broker. With the embedded bus nobody else can read its bus, so it also routes
 * what it ingested (into its own store) and publishes those deliveries itself: then it is a
 * self-contained MQTT routing instance, and push notifications due for its recipients wait in its
 * own push queue (no push sender runs here).
 */
export async function startMqttBridge(config: Config, explicit: ExplicitSettings): Promise<MqttBridgeNode> {
  if (config.mqttUrl === undefined) throw new Error("the MQTT bridge needs ROUTING_MQTT_URL (the external broker it consumes)");
  const broker = new ServiceBroker({
    ...brokerConfig,
    nodeID: config.instanceId,
    // Not a cluster member: its router service (embedded bus) serves only this process.
    transporter: null,
    logger: brokerLogger(config),
  });
  const log = broker.getLogger("mqtt-bridge");
  // One process per data dir, as for a routing node.
  const lock = await lockDataDir(config.dataDir, config.instanceId);
  const backends = await createBackends(config);
  const metrics = createMetrics();
  const ingress = createIngress({ bus: backends.bus, maxEnvelopeBytes: config.maxEnvelopeBytes, metrics });
  const link = createExternalLink({
    url: config.mqttUrl,
    clientId: `routing-bridge-${config.instanceId}`,
    topics: mqttTopics({ ingest: config.mqttIngestTopic, receive: config.mqttReceiveTopic, ack: config.mqttAckTopic }),
    shareGroup: config.mqttShareGroup,
    ingest: createMqttIngest({ ingress, mailbox: backends.mailbox, log }),
    connectTimeoutMs: config.authTimeoutMs,
    log,
  });

  const routes = config.bus === "embedded";
  const router = routes
    ? createRouterService({
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
        drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 2),
      })
    : undefined;
  if (router) broker.createService(router.schema);
  const ops = createOpsServer(metrics, async () => link.connected() && (await backends.ready()));

  let httpPort = 0;
  try {
    await link.start();
    await broker.start();
    httpPort = await listenWithFallback("http", (p) => listenServer(ops, config.host, p), config.httpPort, explicit.has("httpPort"), log);
  } catch (err) {
    await link.close().catch(() => {});
    await broker.stop().catch(() => {});
    await backends.close();
    lock.release();
    throw err;
  }
  log.info(`routing ready: http=${httpPort} mqtt=external role=mqtt-bridge routes=${routes} bus=${config.bus} store=${config.store} instance=${config.instanceId}`);

  let stopping: Promise<void> | undefined;
  return {
    httpPort,
    shutdown: () =>
      (stopping ??= (async () => {
        // Routing in flight may still publish deliveries: the link closes after the router.
        await router?.stop();
        await link.close();
        await broker.stop();
        await new Promise<void>((resolve) => ops.close(() => resolve()));
        await backends.close();
        lock.release();
      })()),
  };
}
