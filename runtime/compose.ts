import { ServiceBroker, type BrokerOptions, type LoggerInstance, type Transporter } from "moleculer";
import brokerConfig from "../moleculer.config.ts";
import { createBackends, type Backends } from "../backends/factory.ts";
import type { ExplicitSettings } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createMetrics, type Metrics } from "../metrics/registry.ts";
import { createQuota } from "../lifecycle/quota.ts";
import { createLimits } from "../limits/index.ts";
import { createIngress } from "../routing/ingress.ts";
import { createBackendsService } from "../services/backends.service.ts";
import { createIngressService } from "../services/ingress.service.ts";
import { createMailboxService } from "../services/mailbox.service.ts";
import { lockDataDir, type DataDirLock } from "../platform/data-dir-lock.ts";
import { DrainClock, gateIngress, type IngressGate } from "../platform/drain.ts";
import { brokerLogger } from "./logger.ts";
import { createLifecycle, type Lifecycle, type PartSchema } from "../platform/lifecycle.ts";

/** What a caller hosting the process adds (the REPL: a middleware redacting payloads from what it prints). */
export interface NodeExtras {
  readonly middlewares?: BrokerOptions["middlewares"];
}

/** What every role is built on; a role adds its parts with `add`. */
export interface Runtime {
  readonly broker: ServiceBroker;
  readonly config: Config;
  readonly explicit: ExplicitSettings;
  readonly backends: Backends;
  readonly metrics: Metrics;
  /** The ingress behind the drain's gate: what every protocol and the `ingress` action use. */
  readonly gate: IngressGate;
  /** Send rate, connection limit, ingress bound (issue 14, docs/limits.md). */
  readonly limits: ReturnType<typeof createLimits>;
  readonly clock: DrainClock;
  readonly lifecycle: Lifecycle;
  readonly lock: DataDirLock;
  readonly log: LoggerInstance;
  /** Hosts a part on the broker; `dependencies`: the services it uses (started before it, stopped after it). */
  add(part: PartSchema, dependencies?: readonly string[]): void;
}

export interface Composed {
  readonly broker: ServiceBroker;
  readonly config: Config;
  readonly backends: Backends;
  readonly lifecycle: Lifecycle;
  /**
   * The one way down: begins the drain at once (readiness 503, no new sockets or sends) and calls
   * `broker.stop()`, which stops the parts in dependency order. `broker.stop()` called directly
   * (the REPL's `quit`) does the same, the drain beginning when the broker starts stopping.
   */
  stop(): Promise<void>;
}

/**
 * The composition root of every process role (`npm start`'s routing node, the MQTT bridge): one
 * ServiceBroker whose services own the whole life cycle. The backends, the gated ingress and the
 * mailbox are common; `role` adds its parts and returns the ready line. Nothing else constructs
 * backends or reads the config.
 */
export async function compose(
  config: Config,
  explicit: ExplicitSettings,
  extra: NodeExtras,
  /** `closeIntakeAtDrain`: the node refuses new sends the moment the drain begins; the bridge's link stops taking publishes itself (it leaves the share group first, then finishes what it holds). */
  {
    name,
    closeIntakeAtDrain,
    transporter,
    quota,
  }: {
    name: string;
    closeIntakeAtDrain: boolean;
    /** The broker's transporter; the data dir is locked by then (the node's local REPL socket lives there). */
    transporter: (lock: DataDirLock) => Transporter | string | null;
    /** Per-recipient quotas at the ingress (issue 21; the node only). */
    quota: boolean;
  },
  role: (rt: Runtime) => Promise<() => string> | (() => string),
): Promise<Composed> {
  const clock = new DrainClock(config.shutdownTimeoutMs);
  const lifecycle = createLifecycle({ onDrain: () => clock.start() });
  // One process per data dir: a second one here refuses to start, naming the holder's pid.
  const lock = await lockDataDir(config.dataDir, config.instanceId);
  const broker = new ServiceBroker({
    ...brokerConfig,
    middlewares: [lifecycle.middleware, ...(brokerConfig.middlewares ?? []), ...(extra.middlewares ?? [])],
    nodeID: config.instanceId,
    // cluster (issue 5/7): nodes sharing a transporter and namespace form one cluster (the REPL's --join too).
    namespace: config.namespace,
    transporter: transporter(lock),
    // Local dependencies are awaited by the lifecycle itself; Moleculer's own check polls the registry.
    dependencyInterval: 50,
    // Signals belong to the process runner (runtime/process.ts): Moleculer's own SIGTERM handler would
    // call broker.stop() a second time, concurrently, and exit when that one finished.
    skipProcessEventRegistration: true,
    logger: brokerLogger(config),
  });
  const log = broker.getLogger(name);
  const metrics = createMetrics();
  let backends: Backends;
  try {
    backends = await createBackends(config, { onExpired: metrics.mailboxExpired });
  } catch (err) {
    lock.release();
    throw err;
  }
  // data life cycle (issue 21): quota at the ingress (docs/data-lifecycle.md).
  const admit = quota
    ? createQuota({ usage: (urn) => backends.mailbox.usage(urn), maxMessages: config.mailboxMaxMessages, maxBytes: config.mailboxMaxBytes })
    : undefined;
  // limits and overload (issue 14): send rate, connection limit, ingress bound (docs/limits.md), on every role.
  const limits = createLimits(config, backends.bus);
  const gate = gateIngress(createIngress({ bus: backends.bus, maxEnvelopeBytes: config.maxEnvelopeBytes, metrics, quota: admit, limits }));
  const add = (part: PartSchema, dependencies: readonly string[] = []): void => void broker.createService(lifecycle.part(part, dependencies));
  add(createBackendsService({ backends, lock }));
  add({ name: "limits", stopped: () => limits.close() }, ["backends"]);
  add(createIngressService({ ingress: gate.ingress, gate, clock, closeAtDrain: closeIntakeAtDrain }), ["backends", "limits"]);
  add(createMailboxService({ mailbox: backends.mailbox, purge: { devices: backends.devices, pushQueue: backends.pushQueue, bus: backends.bus } }), [
    "backends",
  ]);

  let readyLine: () => string;
  try {
    readyLine = await role({ broker, config, explicit, backends, metrics, gate, limits, clock, lifecycle, lock, log, add });
    await broker.start();
  } catch (err) {
    await broker.stop().catch(() => {});
    await limits.close().catch(() => {});
    await backends.close().catch(() => {});
    lock.release();
    throw err;
  }
  log.info(readyLine());

  return {
    broker,
    config,
    backends,
    lifecycle,
    stop() {
      lifecycle.beginDrain();
      return broker.stop();
    },
  };
}
