import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../config/load.ts";
import { startNode, type NodeExtras, type RoutingNode } from "../../runtime/node.ts";
import { removeDir, TEST_SECRET } from "./service.ts";

export interface InProcessNode {
  readonly node: RoutingNode;
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** A routing node in this process (`startNode`), on ephemeral ports and a fresh data dir. */
export async function startInProcess(env: Record<string, string> = {}, extra: NodeExtras = {}): Promise<InProcessNode> {
  const dataDir = mkdtempSync(join(tmpdir(), "routing-inproc-"));
  const { config, explicit } = loadConfig({
    ROUTING_HTTP_PORT: "0",
    ROUTING_MQTT_PORT: "0",
    ROUTING_HOST: "127.0.0.1",
    ROUTING_DATA_DIR: dataDir,
    ROUTING_JWT_SECRET: TEST_SECRET,
    ROUTING_LOG_LEVEL: "warn",
    ...env,
  });
  const node = await startNode(config, explicit, extra);
  return {
    node,
    port: node.httpPort,
    url: `http://127.0.0.1:${node.httpPort}`,
    async stop() {
      await node.shutdown();
      removeDir(dataDir);
    },
  };
}
