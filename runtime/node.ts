import type { ServiceBroker } from "moleculer";
import { devSecretNotice, resolveAuth } from "../auth/index.ts";
import type { Backends } from "../backends/factory.ts";
import type { Config } from "../config/schema.ts";
import type { ExplicitSettings } from "../config/load.ts";
import { buildAsyncApi } from "../docs-api/asyncapi.ts";
import { buildOpenApi } from "../docs-api/openapi.ts";
import { createMqtt } from "../broker/index.ts";
import { createGateway } from "../gateway/index.ts";
import { demoEnabled } from "../demo/enabled.ts";
import { createDemoRoutes } from "../demo/routes.ts";
import type { OperatorEndpoints } from "../gateway/http-routes.ts";
import { createSessionHost } from "../gateway/sessions.ts";
import { createTickets } from "../gateway/sse/tickets.ts";
import { createPushSenders, pushSettings, signalOnEnqueue } from "../push/index.ts";
import { startRetentionSweep, sweepIntervalMs } from "../lifecycle/retention.ts";
import { createRouter } from "../routing/router.ts";
import { createSignalBridge } from "../routing/create-signal-bridge.ts";
import { movedTo, moveSessionsOnLoss, type Placement } from "../gateway/moved.ts";
import { createDevicesService } from "../services/devices.service.ts";
import { createGatewayService } from "../services/gateway.service.ts";
import { createMqttService } from "../services/mqtt.service.ts";
import { createPresenceService } from "../services/presence.service.ts";
import { createPushService } from "../services/push.service.ts";
import { createRouterService } from "../services/router.service.ts";
import { createSignalsService } from "../services/signals.service.ts";
import { createRetentionService } from "../services/retention.service.ts";
import { createShardsService, type ShardsService } from "../services/shards.service.ts";
import { openShardLeases } from "../shards/create-leases.ts";
import { createStatusService } from "../services/status.service.ts";
import { statusPage } from "../status/page.ts";
import { createThroughput } from "../status/throughput.ts";
import { compose, type NodeExtras } from "./compose.ts";
import { LocalHubTransporter, localSocketPath } from "./local-transporter.ts";
import type { Lifecycle } from "../platform/lifecycle.ts";

export type { NodeExtras } from "./compose.ts";

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
  readonly lifecycle: Lifecycle;
  /** Graceful shutdown, the one way down: the drain, then `broker.stop()` (parts in dependency order). */
  shutdown(): Promise<void>;
}

/**
 * The routing node (`npm start`): the common parts (backends, gated ingress, mailbox) plus devices,
 * presence, signals, MQTT, router, push, status and the gateway, each a service that names what it
 * depends on. Stop order (edge first): gateway, push, retention, router; devices, MQTT, signals,
 * status; ingress, mailbox, presence; limits; backends (test/lifecycle-order.test.ts).
 */
export async function startNode(config: Config, explicit: ExplicitSettings, extra: NodeExtras = {}): Promise<RoutingNode> {
  let sessions: ReturnType<typeof createSessionHost> | undefined;
  let httpPort = 0;
  let mqttPort: number | undefined;
  // No transporter configured: serve a local one on a Unix socket in the data dir, so `npm run repl` attaches to this node.
  let local: LocalHubTransporter | undefined;
  const transporter = (lock: { dataDir: string }) => config.transporter ?? (local = new LocalHubTransporter({ path: localSocketPath(lock.dataDir) }));
  let markReady: () => void = () => {};
  let demoOn = false;
  const composed = await compose(
    config,
    explicit,
    extra,
    { name: "routing", closeIntakeAtDrain: true, transporter, quota: true },
    async ({ broker, backends, metrics, gate, limits, clock, lock, log, add, lifecycle }) => {
      markReady = () => {
        if (local?.listening) lock.update({ replSocket: local.path });
      };
      const ingress = gate.ingress;
      const pushSenders = createPushSenders(config, log);
      const auth = resolveAuth(config);
      if (auth.devSecret) log.info(devSecretNotice(auth.devSecret.path));
      // Each drain phase gets its share of ROUTING_SHUTDOWN_TIMEOUT_MS (platform/drain.ts): sessions up
      // to half of it, the router up to three quarters, so everything ends before the forced exit.
      const phaseMs = Math.floor(config.shutdownTimeoutMs / 4);
      const host = createSessionHost({
        instanceId: config.instanceId,
        presence: backends.presence,
        metrics,
        maxBufferBytes: config.wsMaxBufferBytes,
        authTimeoutMs: config.authTimeoutMs,
        heartbeatMs: config.heartbeatSeconds * 1000,
        drainTimeoutMs: phaseMs,
        log,
      });
      sessions = host;
      // sharded delivery (issue 15, docs/sharding.md): the coordinator, on the lease engine the rule names.
      let shards: ShardsService | undefined;
      if (config.deliveryStrategy === "sharded") {
        shards = createShardsService({
          leases: await openShardLeases(config),
          shardCount: config.shardCount,
          nodeId: config.instanceId,
          url: () => config.publicUrl ?? `http://${config.host}:${httpPort}`,
          log,
          onOwnedCount: (count) => metrics.shardsOwned.set(count),
        });
        add(shards.schema);
      }
      const ready = shards ? async () => (shards as ShardsService).ready() && (await backends.ready()) : backends.ready;
      const placement: Placement = {
        shards: shards?.directory,
        instanceId: config.instanceId,
        shardCount: config.shardCount,
        selfUrl: () => config.publicUrl ?? `http://${config.host}:${httpPort}`,
      };
      const pushQueue = signalOnEnqueue(backends.pushQueue, () => broker.broadcastLocal("push.queue.changed"));
      // The owner of a shard delivers its signals, or records the push (routing/owner-decision.ts).
      const signals = await createSignalBridge(config, host, metrics.signalCounters(), { shards: shards?.directory, pushQueue, log });
      // A shard this node stops owning takes its sessions along (4010 MOVED); the drain closes them itself (1001).
      moveSessionsOnLoss(placement, host, lifecycle.draining);
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
        sessions: host,
        log,
        connections: limits.connections,
        placement,
      });
      const reach = mqtt.reach({ presence: backends.presence, signals });
      const route = createRouter({ mailbox: backends.mailbox, presence: reach.presence, signals: reach.signals, pushQueue });
      // operator tools (issue 7): API documents, status page, mailbox depth gauge.
      let documents: { openapi: string; asyncapi: string } | undefined;
      // Built on first request, after the listeners are bound: the AsyncAPI servers name the ports in use.
      const docs = () =>
        (documents ??= { openapi: JSON.stringify(buildOpenApi()), asyncapi: JSON.stringify(buildAsyncApi({ http: httpPort, mqtt: mqttPort })) });
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
      demoOn = demoEnabled(config, auth);
      const gateway = createGateway({
        operator,
        engine: config.gatewayEngine,
        verifier: auth.verifier,
        ingress,
        mailbox: backends.mailbox,
        devices: backends.devices,
        sessions: host,
        metrics,
        maxEnvelopeBytes: config.maxEnvelopeBytes,
        ready,
        log,
        streams: mqtt.streams,
        connections: limits.connections,
        hygiene: { headerTimeoutMs: config.httpHeaderTimeoutMs, bodyTimeoutMs: config.httpBodyTimeoutMs, maxUnauthenticated: config.maxUnauthenticatedSockets },
        reusePort: config.httpReusePort,
        // more ways in (issue 20): GET /events with POST /tickets, and POST /send/batch.
        tickets: createTickets({ store: backends.tickets }),
        batch: { maxEnvelopes: config.maxBatchEnvelopes, maxBytes: config.maxBatchBytes },
        // demo (issue 17): /demo, off unless enabled (default: the embedded default with the dev secret).
        pages: demoOn ? createDemoRoutes({ secret: auth.secret }) : undefined,
        placement,
        movedTo: (identity) => movedTo(placement, identity),
      });
      const router = createRouterService({
        bus: backends.bus,
        busName: config.bus,
        route,
        metrics,
        maxInFlight: config.routerMaxInFlight,
        drainTimeoutMs: phaseMs,
        presence: backends.presence,
        // Only this process reads the embedded bus: route its whole backlog before stopping.
        drainBacklog: config.bus === "embedded" ? clock : undefined,
        intakeSettled: gate.settled,
      });

      let mqttReady = "";
      // The dependency graph (docs/deploy.md): each part starts after, and stops before, what it uses.
      add(createDevicesService({ devices: backends.devices }), ["backends"]);
      add(
        createPresenceService({
          presence: backends.presence,
          instanceId: config.instanceId,
          heartbeatMs: Math.max(1000, (config.presenceTtlSeconds * 1000) / 3),
        }),
        ["backends"],
      );
      add(createSignalsService({ signals }));
      add(
        createMqttService({
          mqtt,
          onStarted: (part) => {
            mqttReady = part;
            mqttPort = /^mqtt=(\d+)$/.test(part) ? Number(part.slice("mqtt=".length)) : undefined;
          },
        }),
        ["ingress", "mailbox", "presence"],
      );
      // data life cycle (issue 21): the retention sweep, stopped before the mailbox closes.
      add(
        createRetentionService({
          start: () =>
            startRetentionSweep({
              mailbox: backends.mailbox,
              intervalMs: sweepIntervalMs(config.mailboxRetentionSeconds * 1000),
              onExpired: metrics.mailboxExpired,
              log,
            }),
        }),
        ["backends", "mailbox"],
      );
      add(router.schema, ["backends", "mailbox", "presence", "signals", "mqtt"]);
      add(createStatusService({ throughput: createThroughput(metrics.totals) }));
      // Its actor finishes the batch in progress when it stops, before the backends close.
      add(
        createPushService({
          queue: backends.pushQueue,
          presence: backends.presence,
          mailbox: backends.mailbox,
          devices: backends.devices,
          senders: pushSenders,
          metrics,
          ...pushSettings(config),
        }),
        ["backends", "presence", "mailbox", "devices"],
      );
      add(
        createGatewayService({
          gateway,
          sessions: host,
          gate,
          clock,
          host: config.host,
          port: config.httpPort,
          portExplicit: explicit.has("httpPort"),
          onListening: (p) => (httpPort = p),
        }),
        ["ingress", "mailbox", "devices", "presence", "signals", "mqtt", "status"],
      );

      return () =>
        `routing ready: http=${httpPort} ${mqttReady} engine=${gateway.engine.name} bus=${config.bus} store=${config.store} instance=${config.instanceId}`;
    },
  );

  markReady();
  if (demoOn)
    composed.broker.getLogger("routing").info(`demo: end-to-end-encrypted chat at http://localhost:${httpPort}/demo (ROUTING_DEMO=false turns it off)`);
  return {
    broker: composed.broker,
    config,
    get httpPort() {
      return httpPort;
    },
    get mqttPort() {
      return mqttPort;
    },
    backends: composed.backends,
    sessions: sessions as ReturnType<typeof createSessionHost>,
    lifecycle: composed.lifecycle,
    shutdown: () => composed.stop(),
  };
}
