import { ServiceBroker } from "moleculer";
import brokerConfig from "../moleculer.config.ts";
import { devSecretNotice, resolveAuth } from "../auth/index.ts";
import { createBackends, type Backends } from "../backends/factory.ts";
import type { Config, } from "../config/schema.ts";
import type { ExplicitSettings } from "../config/load.ts";
import { createGateway } from "../gateway/index.ts";
import { createSessionHost } from "../gateway/sessions.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createIngress } from "../routing/ingress.ts";
import { createRouter } from "../routing/router.ts";
import { createLocalSignalBridge } from "../routing/signals.ts";
import { createDevicesService } from "../services/devices.service.ts";
import { createGatewayService } from "../services/gateway.service.ts";
import { createIngressService } from "../services/ingress.service.ts";
import { createMailboxService } from "../services/mailbox.service.ts";
import { createPresenceService } from "../services/presence.service.ts";
import { createRouterService } from "../services/router.service.ts";

export interface RoutingNode {
  readonly broker: ServiceBroker;
  readonly config: Config;
  readonly httpPort: number;
  readonly backends: Backends;
  readonly sessions: ReturnType<typeof createSessionHost>;
  /** Graceful shutdown: stop intake, drain sessions (1001), finish or return in-flight bus work, close backends. */
  shutdown(): Promise<void>;
}

/**
 * The composition root: builds the backends the config selects, wires them into the services'
 * functions, hosts the services on one ServiceBroker and starts it. Nothing else constructs
 * backends or reads the config.
 */
export async function startNode(config: Config, explicit: ExplicitSettings): Promise<RoutingNode> {
  const broker = new ServiceBroker({
    ...brokerConfig,
    nodeID: config.instanceId,
    logger: { type: "Pino", options: { ...(brokerConfig.logger as { options: object }).options, level: config.logLevel } },
  });
  const log = broker.getLogger("routing");
  const backends = await createBackends(config);
  const auth = resolveAuth(config);
  if (auth.devSecret) log.info(devSecretNotice(auth.devSecret.path));

  const metrics = createMetrics();
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
  const signals = createLocalSignalBridge(sessions);
  const ingress = createIngress({ bus: backends.bus, maxEnvelopeBytes: config.maxEnvelopeBytes, metrics });
  const route = createRouter({ mailbox: backends.mailbox, presence: backends.presence, signals, pushQueue: backends.pushQueue });
  const gateway = createGateway({
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
  });
  const router = createRouterService({
    bus: backends.bus,
    busName: config.bus,
    route,
    metrics,
    maxInFlight: config.routerMaxInFlight,
    drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 2),
  });

  let httpPort = 0;
  broker.createService(createIngressService({ ingress }));
  broker.createService(createMailboxService({ mailbox: backends.mailbox }));
  broker.createService(createDevicesService({ devices: backends.devices }));
  broker.createService(createPresenceService({ presence: backends.presence, instanceId: config.instanceId, heartbeatMs: Math.max(1000, (config.presenceTtlSeconds * 1000) / 3) }));
  broker.createService(router.schema);
  broker.createService(
    createGatewayService({ gateway, sessions, host: config.host, port: config.httpPort, portExplicit: explicit.has("httpPort"), onListening: (p) => (httpPort = p) }),
  );

  try {
    await broker.start();
  } catch (err) {
    await broker.stop().catch(() => {});
    await gateway.close().catch(() => {});
    await backends.close();
    throw err;
  }
  log.info(`routing ready: http=${httpPort} engine=${gateway.engine.name} bus=${config.bus} store=${config.store} instance=${config.instanceId}`);

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      gateway.stopAccepting();
      await sessions.drainAll(Math.floor(config.shutdownTimeoutMs / 2));
      await router.stop();
      await broker.stop();
      await gateway.close();
      await signals.close();
      await backends.close();
    })());

  return {
    broker,
    config,
    get httpPort() {
      return httpPort;
    },
    backends,
    sessions,
    shutdown,
  };
}
