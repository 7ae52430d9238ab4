/** `npm start`: one routing node on the configured backends (embedded by default). */
import { ConfigError, loadConfig } from "../config/load.ts";
import { startNode } from "../runtime/node.ts";

async function main(): Promise<void> {
  const { config, explicit } = loadConfig();
  const node = await startNode(config, explicit);
  let signals = 0;
  const stop = (signal: string) => {
    if (++signals > 1) process.exit(1);
    const force = setTimeout(() => {
      console.error(`shutdown took longer than ${config.shutdownTimeoutMs} ms; exiting`);
      process.exit(1);
    }, config.shutdownTimeoutMs + 1000);
    force.unref();
    node.broker.getLogger("routing").info(`${signal}: draining`);
    node.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error("shutdown failed", err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? err.message : `start-up failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
