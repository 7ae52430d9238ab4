import { ConfigError, loadConfig, type ExplicitSettings } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/**
 * Runs one process role (`npm start`, the MQTT bridge) the same way: load the config, start, and on
 * SIGTERM/SIGINT shut down gracefully within the configured bound (a second signal, or a shutdown
 * past the bound, exits at once). Start-up errors print one clear line and exit 1.
 */
export interface RunningProcess {
  shutdown(): Promise<void>;
  /** Where the one "draining" line goes. */
  log(message: string): void;
}

export function runProcess(start: (config: Config, explicit: ExplicitSettings) => Promise<RunningProcess>, drainingMessage: string): void {
  const main = async (): Promise<void> => {
    const { config, explicit } = loadConfig();
    const running = await start(config, explicit);
    let signals = 0;
    const stop = (signal: string): void => {
      if (++signals > 1) process.exit(1);
      const force = setTimeout(() => {
        console.error(`shutdown took longer than ${config.shutdownTimeoutMs} ms; exiting`);
        process.exit(1);
      }, config.shutdownTimeoutMs + 1000);
      force.unref();
      running.log(`${signal}: ${drainingMessage}`);
      running.shutdown().then(
        () => process.exit(0),
        (err: unknown) => {
          console.error("shutdown failed", err);
          process.exit(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  };
  main().catch((err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `start-up failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
