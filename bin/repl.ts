/**
 * `npm run repl`: the Moleculer REPL attached to the RUNNING node, with the routing commands
 * (`sessions`, `presence`, `mailbox`, `route`, `actors`, `bus`, ...) beside its own (`call`, `nodes`,
 * `services`, `actions`, ...). It never starts a node of its own: it opens no HTTP or MQTT listener,
 * hosts no service and so never consumes the ingress.
 *
 *   embedded default (no ROUTING_TRANSPORTER): attaches through the local socket that the node
 *     holding ROUTING_DATA_DIR serves (named in <data dir>/node.json); same settings as `npm start`.
 *   ROUTING_TRANSPORTER set: joins the cluster through it (ROUTING_NAMESPACE) as a service-less node.
 *
 * No running node: says so and exits 1. Zero knowledge holds here too: every result of a call made
 * from this process (the REPL's own `call mailbox.fetch` included) has its payload fields replaced by
 * their size before it is printed.
 */
import { hostname } from "node:os";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import REPL from "moleculer-repl";
import brokerConfig from "../moleculer.config.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { REPL_COMMANDS } from "../repl/commands.ts";
import { redactPayloadsMiddleware } from "../repl/redact.ts";
import { processAlive, readNodeFile } from "../platform/data-dir-lock.ts";
import { LocalPeerTransporter } from "../runtime/local-transporter.ts";
import { brokerLogger } from "../runtime/logger.ts";

class NoNodeError extends Error {}

/** How the REPL reaches the node: the configured transporter, or the local socket of the data dir's node. */
function transporterFor(config: Config): { transporter: NonNullable<BrokerOptions["transporter"]>; describe: string } {
  if (config.transporter) return { transporter: config.transporter, describe: `namespace "${config.namespace}" through ${config.transporter}` };
  const node = readNodeFile(config.dataDir);
  if (!node || !processAlive(node.pid)) {
    throw new NoNodeError(`no running node for data dir ${config.dataDir}: start one with \`npm start\` (same ROUTING_DATA_DIR), then run the REPL again`);
  }
  if (!node.replSocket)
    throw new NoNodeError(`process ${node.pid} holds data dir ${config.dataDir} but serves no REPL socket (an MQTT bridge, or a node still starting)`);
  const onClose = () => {
    console.log(`\nthe node (pid ${node.pid}) went away; leaving the REPL`);
    process.exit(1);
  };
  return {
    transporter: new LocalPeerTransporter({ path: node.replSocket, onClose }),
    describe: `node ${node.instanceId} (pid ${node.pid}) through ${node.replSocket}`,
  };
}

async function main(): Promise<void> {
  const loaded = loadConfig();
  // Logs would interleave with the prompt: warn unless asked for.
  const config: Config = loaded.explicit.has("logLevel") ? loaded.config : Object.freeze({ ...loaded.config, logLevel: "warn" });
  const { transporter, describe } = transporterFor(config);
  const broker = new ServiceBroker({
    ...brokerConfig,
    namespace: config.namespace,
    transporter,
    nodeID: `repl-${hostname().replace(/[^A-Za-z0-9_-]/g, "")}-${process.pid}`,
    middlewares: [redactPayloadsMiddleware],
    logger: brokerLogger(config),
  });
  try {
    await broker.start();
  } catch (err) {
    throw new NoNodeError(`could not attach to ${describe}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Discovery takes a packet exchange (a heartbeat or two through a cluster transporter).
  try {
    await broker.waitForServices(["gateway", "router"], 5000);
  } catch {
    await broker.stop().catch(() => {});
    throw new NoNodeError(`no running node answered in ${describe}`);
  }
  console.log(`attached to ${describe} as ${broker.nodeID} (type "help" for commands, "quit" to leave; the node keeps running)`);
  const customCommands = REPL_COMMANDS.map((c) => ({ ...c, alias: null, allowUnknownOptions: null, parse: null, options: [] }));
  REPL(broker, { delimiter: "routing $", customCommands });
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError || err instanceof NoNodeError ? err.message : `repl failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
