import { createRequire } from "node:module";
import type { BrokerOptions } from "moleculer";
import type PinoPretty from "pino-pretty";
import type { Config } from "../config/schema.ts";

/**
 * The broker's logger (pino through Moleculer's logger): JSON lines, or human-readable lines from
 * pino-pretty when stdout is a terminal (ROUTING_LOG_FORMAT forces either). Pretty output is written
 * synchronously, as pino writes JSON to stdout, so nothing is lost on exit.
 *
 * At info, Moleculer's own start-up chatter (version, serializer, registry, service started/stopped...)
 * stays out: a person starting the node sees the few lines the service itself writes, ending in the
 * one `routing ready:` line. At debug and trace everything is there.
 */
const QUIET_AT_INFO = ["BROKER", "REGISTRY", "DISCOVERY", "TRANSIT", "TRANSPORTER", "$NODE"] as const;
/**
 * Lines Moleculer writes through each service's own logger (started, stopped, and the wait for the
 * `dependencies` the composition root declares, and their arrival); kept out below debug, the service's own lines stay.
 */
const LIFECYCLE = /^(Service '[^']+' (started|stopped)\.|Waiting for service\(s\) '[^']*'\.\.\.|Service\(s\) '[^']*' are available\.)$/;

/** pino-pretty is loaded only when used: JSON output (tests, production) never pays for its import. */
function prettyStream(colorize: boolean): ReturnType<typeof PinoPretty> {
  const pinoPretty = createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
  return pinoPretty({ sync: true, colorize, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,nodeID,ns,mod,svc,ver", messageFormat: "{mod}: {msg}" });
}

export function usePretty(format: Config["logFormat"], stdoutIsTty: boolean): boolean {
  return format === "pretty" || (format === "auto" && stdoutIsTty);
}

export function brokerLogger(
  config: Pick<Config, "logLevel" | "logFormat">,
  stdoutIsTty = process.stdout.isTTY === true,
): NonNullable<BrokerOptions["logger"]> {
  const verbose = config.logLevel === "debug" || config.logLevel === "trace";
  const quiet = (level: string) => (verbose || level === "fatal" || level === "error" ? level : "warn");
  const level = Object.fromEntries([...QUIET_AT_INFO.map((mod) => [mod, quiet(config.logLevel)]), ["**", config.logLevel]]);
  const pretty = usePretty(config.logFormat, stdoutIsTty);
  return {
    type: "Pino",
    options: {
      level,
      pino: {
        options: {
          base: undefined,
          timestamp: () => `,"time":"${new Date().toISOString()}"`,
          hooks: {
            logMethod(this: unknown, args: unknown[], method: (...a: unknown[]) => void) {
              if (!verbose && args.some((a) => typeof a === "string" && LIFECYCLE.test(a))) return;
              method.apply(this, args);
            },
          },
        },
        destination: pretty ? prettyStream(stdoutIsTty) : undefined,
      },
    },
  };
}
