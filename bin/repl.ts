/**
 * `npm run repl`: the Moleculer REPL with the routing commands (`sessions`, `presence`, `mailbox`,
 * `route`, `actors`, `bus`) beside its own (`call`, `nodes`, `services`, `actions`, ...).
 *
 *   npm run repl                 runs the embedded service in this process (as `npm start`) and opens the REPL
 *   npm run repl -- --join       joins a running cluster through ROUTING_TRANSPORTER as a service-less node
 *
 * Zero knowledge holds here too: every result of a call made from this process (the REPL's own
 * `call mailbox.fetch` included) has its payload fields replaced by their size before it is printed.
 *
 * Logs go to stdout as JSON lines and would interleave with the prompt, so the REPL logs at `warn`
 * unless ROUTING_LOG_LEVEL is set.
 */
import { hostname } from "node:os";
import { ServiceBroker } from "moleculer";
import REPL from "moleculer-repl";
import brokerConfig from "../moleculer.config.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { REPL_COMMANDS } from "../repl/commands.ts";
import { redactPayloadsMiddleware } from "../repl/redact.ts";
import { startNode } from "../runtime/node.ts";

async function joinCluster(config: Config): Promise<ServiceBroker> {
  if (!config.transporter) throw new ConfigError("--join needs ROUTING_TRANSPORTER (e.g. nats://127.0.0.1:4222): the REPL joins the cluster through it");
  const broker = new ServiceBroker({
    ...brokerConfig,
    namespace: config.namespace,
    transporter: config.transporter,
    nodeID: `repl-${hostname().replace(/[^A-Za-z0-9_-]/g, "")}-${process.pid}`,
    middlewares: [redactPayloadsMiddleware],
    logger: { type: "Pino", options: { ...(brokerConfig.logger as { options: object }).options, level: config.logLevel } },
  });
  await broker.start();
  // Discovery takes a heartbeat or two; commands work on whatever the registry knows by then.
  await broker.waitForServices(["gateway", "router"], 5000).catch(() => console.log(`no gateway/router service seen in namespace "${config.namespace}" yet`));
  return broker;
}

async function main(): Promise<void> {
  const join = process.argv.slice(2).includes("--join");
  const loaded = loadConfig();
  const config: Config = loaded.explicit.has("logLevel") ? loaded.config : Object.freeze({ ...loaded.config, logLevel: "warn" });
  let broker: ServiceBroker;
  if (join) {
    broker = await joinCluster(config);
    console.log(`joined namespace "${config.namespace}" through ${config.transporter} as ${broker.nodeID}`);
  } else {
    const node = await startNode(config, loaded.explicit, { middlewares: [redactPayloadsMiddleware] });
    broker = node.broker;
    // moleculer-repl's `quit` and Ctrl+D call broker.stop() and exit: make that the node's graceful
    // shutdown (sessions drain with 1001, the router finishes, backends close), which itself stops the broker.
    const stopBroker = broker.stop.bind(broker);
    let stopping = false;
    broker.stop = async () => {
      if (stopping) return stopBroker();
      stopping = true;
      await node.shutdown();
    };
    console.log(`embedded node ${broker.nodeID}: http=${node.httpPort} (type "help" for commands, "quit" to stop)`);
  }
  const customCommands = REPL_COMMANDS.map((c) => ({ ...c, alias: null, allowUnknownOptions: null, parse: null, options: [] }));
  REPL(broker, { delimiter: "routing $", customCommands });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : `repl failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
