import { ConfigError, loadConfig, type ExplicitSettings } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/**
 * Runs one process role (`npm start`, the MQTT bridge) the same way: load the config, start, and on
 * SIGTERM/SIGINT drain and stop (`shutdown`: the broker stops every part in order), then exit 0.
 * ROUTING_SHUTDOWN_TIMEOUT_MS is the deadline: past it, or on a second signal, the process exits 1
 * at once. Nothing accepted is lost by that: a 202, `sent` or PUBACK was only given once the bus
 * held the message durably, and whatever the router had not acked goes back to the bus.
 * Start-up errors print one clear line and exit 1.
 */
export interface RunningProcess {
  shutdown(): Promise<void>;
  /** Where the one "draining" line goes. */
  log(message: string): void;
}

export function runProcess(start: (config: Config, explicit: ExplicitSettings) => Promise<RunningProcess>, drainingMessage: string): void {
  const main = async (): Promise<void> => {
    const { config, explicit } = loadConfig();
    // The handlers go in before start-up: the ready line is logged inside `start`, and a SIGTERM
    // right after it must drain, not kill the process with the default action.
    const starting = start(config, explicit);
    let signals = 0;
    const stop = (signal: string): void => {
      if (++signals > 1) {
        console.error(`${signal} again: exiting without finishing the drain`);
        process.exit(1);
      }
      const force = setTimeout(() => {
        console.error(`shutdown took longer than ${config.shutdownTimeoutMs} ms (ROUTING_SHUTDOWN_TIMEOUT_MS); exiting`);
        process.exit(1);
      }, config.shutdownTimeoutMs);
      force.unref();
      starting
        .then((running) => {
          running.log(`${signal}: ${drainingMessage}`);
          return running.shutdown();
        })
        .then(
          () => process.exit(0),
          (err: unknown) => {
            console.error("shutdown failed", err);
            process.exit(1);
          },
        );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    await starting;
  };
  main().catch((err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `start-up failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
