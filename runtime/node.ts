import { ServiceBroker, type BrokerOptions } from "moleculer";
import brokerConfig from "../moleculer.config.ts";
import { devSecretNotice, resolveAuth } from "../auth/index.ts";
import { createBackends, type Backends } from "../backends/factory.ts";
import type { Config, } from "../config/schema.ts";
import type { ExplicitSettings } from "../config/load.ts";
import { buildAsyncApi } from "../docs-api/asyncapi.ts";
import { buildOpenApi } from "../docs-api/openapi.ts";
import { createMqtt } from "../broker/index.ts";
import { createGateway } from "../gateway/index.ts";
import { demoEnabled } from "../demo/enabled.ts";
import { createDemoRoutes } from "../demo/routes.ts";
import type { OperatorEndpoints } from "../gateway/http-routes.ts";
import { createSessionHost } from "../gateway/sessions.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createPushSenders, pushSettings, signalOnEnqueue } from "../push/index.ts";
import { createIngress } from "../routing/ingress.ts";
import { createLimits } from "../limits/index.ts";
import { createQuota } from "../lifecycle/quota.ts";
import { startRetentionSweep, sweepIntervalMs } from "../lifecycle/retention.ts";
import { createRouter } from "../routing/router.ts";
import { createSignalBridge } from "../routing/create-signal-bridge.ts";
import { createDevicesService } from "../services/devices.service.ts";
import { createGatewayService } from "../services/gateway.service.ts";
import { createIngressService } from "../services/ingress.service.ts";
import { createMailboxService } from "../services/mailbox.service.ts";
import { createPresenceService } from "../services/presence.service.ts";
import { createPushService } from "../services/push.service.ts";
import { createRouterService } from "../services/router.service.ts";
import { createStatusService } from "../services/status.service.ts";
import { statusPage } from "../status/page.ts";
import { createThroughput } from "../status/throughput.ts";
import { lockDataDir } from "./data-dir-lock.ts";
import { LocalHubTransporter, localSocketPath } from "./local-transporter.ts";
import { brokerLogger } from "./logger.ts";

/** Ranks of the `routing_mailbox_largest_depth` gauge (and of the status page's list). */
const LARGEST_RANKS = 5;

export interface RoutingNode {
  readonly broker: ServiceBroker;
  readonly config: Config;
  readonly httpPort: number;
  /** The embedded MQTT broker's TCP port; undefined with an external broker. */
  readonly mqttPort: number | undefined;
  readonly backends: Backends;
  readonly sessions: ReturnType<typeof createSessionHost>;
  /** Graceful shutdown: stop intake, drain sessions (1001), finish or return in-flight bus work, close backends. */
  shutdown(): Promise<void>;
}

/** What a caller hosting the node adds (the REPL: a middleware redacting payloads from what it prints). */
export interface NodeExtras {
  readonly middlewares?: BrokerOptions["middlewares"];
}

/**
 * The composition root: builds the backends the config selects, wires them into the services'
 * functions, hosts the services on one ServiceBroker and starts it. Nothing else constructs
 * backends or reads the config.
 */
export async function startNode(config: Config, explicit: ExplicitSettings, extra: NodeExtras = {}): Promise<RoutingNode> {
  // One process per data dir: a second node here refuses to start, naming the holder's pid.
  const lock = await lockDataDir(config.dataDir, config.instanceId);
  // No transporter configured: serve a local one on a Unix socket in the data dir, so `npm run repl` attaches to this node.
  const local = config.transporter ? undefined : new LocalHubTransporter({ path: localSocketPath(lock.dataDir) });
  const broker = new ServiceBroker({
    ...brokerConfig,
    middlewares: [...(brokerConfig.middlewares ?? []), ...(extra.middlewares ?? [])],
    nodeID: config.instanceId,
    // cluster (issue 5/7): nodes sharing a transporter and namespace form one cluster (the REPL's --join too).
    namespace: config.namespace,
    transporter: config.transporter ?? local ?? null,
    logger: brokerLogger(config),
  });
  const log = broker.getLogger("routing");
  const pushSenders = createPushSenders(config, log);
  const metrics = createMetrics();
  const backends = await createBackends(config, { onExpired: metrics.mailboxExpired });
  const auth = resolveAuth(config);
  if (auth.devSecret) log.info(devSecretNotice(auth.devSecret.path));

  const sessions = createSessionHost({
    instanceId: config.instanceId,
    presence: backends.presence,
    metrics,
    maxBufferBytes: config.wsMaxBufferBytes,
    authTimeoutMs: config.authTimeoutMs,
    heartbeatMs: config.heartbeatSeconds * 1000,
    drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 2),
    log,
  });
  const signals = await createSignalBridge(config, sessions, metrics.signalCounters());
  // data life cycle (issue 21): quota at the ingress, retention sweep (docs/data-lifecycle.md).
  const quota = createQuota({ usage: (urn) => backends.mailbox.usage(urn), maxMessages: config.mailboxMaxMessages, maxBytes: config.mailboxMaxBytes });
  const retention = startRetentionSweep({ mailbox: backends.mailbox, intervalMs: sweepIntervalMs(config.mailboxRetentionSeconds * 1000), onExpired: metrics.mailboxExpired, log });
  // limits and overload (issue 14): send rate, connection limit, ingress bound (docs/limits.md).
  const limits = createLimits(config, backends.bus);
  const ingress = createIngress({ bus: backends.bus, maxEnvelopeBytes: config.maxEnvelopeBytes, metrics, quota, limits });
  // mqtt (issue 4): the embedded broker, or this node in an external broker's share group.
  const mqtt = createMqtt({
    instanceId: config.instanceId,
    host: config.host,
    port: config.mqttPort,
    portExplicit: explicit.has("mqttPort"),
    url: config.mqttUrl,
    topics: { ingest: config.mqttIngestTopic, receive: config.mqttReceiveTopic, ack: config.mqttAckTopic },
    shareGroup: config.mqttShareGroup,
    wsPath: config.mqttWsPath,
    maxEnvelopeBytes: config.maxEnvelopeBytes,
    connectTimeoutMs: config.authTimeoutMs,
    verifier: auth.verifier,
    ingress,
    mailbox: backends.mailbox,
    sessions,
    log,
    connections: limits.connections,
  });
  const reach = mqtt.reach({ presence: backends.presence, signals });
  const route = createRouter({ mailbox: backends.mailbox, presence: reach.presence, signals: reach.signals, pushQueue: signalOnEnqueue(backends.pushQueue, () => broker.broadcastLocal("push.queue.changed")) });
  // operator tools (issue 7): API documents (built on first request), status page, mailbox depth gauge.
  let documents: { openapi: string; asyncapi: string } | undefined;
  // Built on first request, after the listeners are bound: the AsyncAPI servers name the ports in use.
  const docs = () => (documents ??= { openapi: JSON.stringify(buildOpenApi()), asyncapi: JSON.stringify(buildAsyncApi({ http: httpPort, mqtt: mqttPort })) });
  const operator: OperatorEndpoints = {
    openapi: () => docs().openapi,
    asyncapi: () => docs().asyncapi,
    statusPage,
    status: () => broker.call("status.snapshot", {}, { nodeID: broker.nodeID }),
  };
  metrics.onScrape(async () => {
    const depth = await backends.mailbox.totalDepth?.();
    if (depth !== undefined) metrics.mailboxDepth.set(depth);
  });
  metrics.onScrape(async () => metrics.mailboxLargest(await backends.mailbox.largest(LARGEST_RANKS), LARGEST_RANKS));
  const demoOn = demoEnabled(config, auth);
  const gateway = createGateway({
    operator,
    engine: config.gatewayEngine,
    verifier: auth.verifier,
    ingress,
    mailbox: backends.mailbox,
    devices: backends.devices,
    sessions,
    metrics,
    maxEnvelopeBytes: config.maxEnvelopeBytes,
    ready: backends.ready,
    log,
    streams: mqtt.streams,
    connections: limits.connections,
    hygiene: { headerTimeoutMs: config.httpHeaderTimeoutMs, bodyTimeoutMs: config.httpBodyTimeoutMs, maxUnauthenticated: config.maxUnauthenticatedSockets },
    reusePort: config.httpReusePort,
    // demo (issue 17): /demo, off unless enabled (default: the embedded default with the dev secret).
    pages: demoOn ? createDemoRoutes({ secret: auth.secret }) : undefined,
  });
  const router = createRouterService({
    bus: backends.bus,
    busName: config.bus,
    route,
    metrics,
    maxInFlight: config.routerMaxInFlight,
    drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 2),
    presence: backends.presence,
  });

  let httpPort = 0;
  broker.createService(createIngressService({ ingress }));
  broker.createService(createMailboxService({ mailbox: backends.mailbox, purge: { devices: backends.devices, pushQueue: backends.pushQueue, bus: backends.bus } }));
  broker.createService(createDevicesService({ devices: backends.devices }));
  broker.createService(createPresenceService({ presence: backends.presence, instanceId: config.instanceId, heartbeatMs: Math.max(1000, (config.presenceTtlSeconds * 1000) / 3) }));
  broker.createService(router.schema);
  broker.createService(createStatusService({ throughput: createThroughput(metrics.totals) }));
  // Stopped with the broker, so its actor stops (finishing the batch in progress) before backends close.
  broker.createService(
    createPushService({ queue: backends.pushQueue, presence: backends.presence, mailbox: backends.mailbox, devices: backends.devices, senders: pushSenders, metrics, ...pushSettings(config) }),
  );
  broker.createService(
    createGatewayService({ gateway, sessions, host: config.host, port: config.httpPort, portExplicit: explicit.has("httpPort"), onListening: (p) => (httpPort = p) }),
  );

  let mqttReady = "";
  let mqttPort: number | undefined;
  try {
    mqttReady = await mqtt.start();
    mqttPort = /^mqtt=(\d+)$/.test(mqttReady) ? Number(mqttReady.slice("mqtt=".length)) : undefined;
    await broker.start();
  } catch (err) {
    await retention.stop();
    await broker.stop().catch(() => {});
    await mqtt.close().catch(() => {});
    await gateway.close().catch(() => {});
    await limits.close();
    await backends.close();
    lock.release();
    throw err;
  }
  if (local?.listening) lock.update({ replSocket: local.path });
  log.info(`routing ready: http=${httpPort} ${mqttReady} engine=${gateway.engine.name} bus=${config.bus} store=${config.store} instance=${config.instanceId}`);
  if (demoOn) log.info(`demo: end-to-end-encrypted chat at http://localhost:${httpPort}/demo (ROUTING_DEMO=false turns it off)`);

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      gateway.stopAccepting();
      mqtt.stopAccepting();
      await sessions.drainAll(Math.floor(config.shutdownTimeoutMs / 2));
      await router.stop();
      // After the router: with an external broker, in-flight routing still publishes deliveries there.
      await mqtt.close();
      await broker.stop();
      await gateway.close();
      await signals.close();
      await retention.stop();
      await limits.close();
      await backends.close();
      lock.release();
    })());

  return {
    broker,
    config,
    get httpPort() {
      return httpPort;
    },
    get mqttPort() {
      return mqttPort;
    },
    backends,
    sessions,
    shutdown,
  };
}
