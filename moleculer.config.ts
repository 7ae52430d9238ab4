import type { BrokerOptions } from "moleculer";

/**
 * Broker options shared by every way of starting a node (bin/main.ts, the tests, the REPL).
 * The runtime adds nodeID (the instance id) and the log level from the resolved config.
 * Single node: no transporter. The cluster issue adds the NATS transporter here.
 */
const brokerConfig: BrokerOptions = {
  namespace: "routing",
  logger: {
    type: "Pino",
    options: {
      level: "info",
      pino: { options: { base: undefined, timestamp: () => `,"time":"${new Date().toISOString()}"` } },
    },
  },
  transporter: null,
  // A call to a node that died fails after this instead of waiting for the heartbeat timeout.
  requestTimeout: 10_000,
  // Metrics are prom-client's, served at /metrics by the gateway (one metrics system, not two).
  metrics: { enabled: false },
  tracing: { enabled: false },
  validator: true,
  errorHandler: undefined,
};

export default brokerConfig;
