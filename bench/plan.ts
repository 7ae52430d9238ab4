/**
 * What one `npm run bench` measures, from the environment. The default plan finishes within ten
 * minutes on the 2-core reference machine; BENCH_QUICK=1 is a fast look, BENCH_SMOKE=1 the few
 * hundred messages `test/bench-smoke.test.ts` runs, BENCH_FULL=1 the whole route matrix (longer).
 */
import { ALL_CONTENDERS, type ContenderName } from "./contenders.ts";
import type { Load, Variant } from "./workers/messages.ts";

export type ScenarioName = "route" | "connections" | "mqtt" | "overload" | "group" | "sse" | "signalling";

export interface VariantPlan {
  readonly variant: Variant;
  readonly loads: readonly Load[];
}

export interface Plan {
  readonly profile: "default" | "quick" | "smoke" | "full";
  readonly scenarios: ReadonlySet<ScenarioName>;
  readonly contenders: readonly ContenderName[];
  readonly rounds: number;
  readonly roundMs: number;
  readonly rampMs: number;
  readonly drainMs: number;
  readonly warmupMs: number;
  readonly workers: number;
  readonly pairs: number;
  readonly window: number;
  /** HTTP keep-alive connections per worker (POST /send). */
  readonly httpConnections: number;
  readonly route: readonly VariantPlan[];
  readonly mqtt: readonly VariantPlan[];
  readonly mqttPairs: number;
  /** Idle WebSocket connections to hold, in increasing steps. */
  readonly connections: readonly number[];
  readonly connectionRounds: number;
  /** Connections per holder process (each has its own open-file limit). */
  readonly connectionsPerHolder: number;
  readonly outDir: string;
}

const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const list = (name: string) =>
  env[name]
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);

const sat = (window: number): Load => ({ kind: "saturate", window });
const rate = (perSecond: number): Load => ({ kind: "rate", perSecond });
const v = (ingress: Variant["ingress"], mode: Variant["mode"], payloadBytes: number): Variant => ({ ingress, mode, payloadBytes });

export function loadPlan(): Plan {
  const profile = env.BENCH_SMOKE === "1" ? "smoke" : env.BENCH_QUICK === "1" ? "quick" : env.BENCH_FULL === "1" ? "full" : "default";
  const window = num("BENCH_WINDOW", profile === "smoke" ? 4 : 8);
  // BENCH_LOADS replaces a variant's loads: rates in msg/s, `max` for saturation.
  const fixed = list("BENCH_LOADS")?.map((s) => (s === "max" ? sat(window) : rate(Number(s))));
  const route: VariantPlan[] = {
    smoke: [{ variant: v("ws", "push", 200), loads: [rate(400)] }],
    quick: [
      { variant: v("ws", "push", 200), loads: [sat(window), rate(5000)] },
      { variant: v("http", "push", 200), loads: [sat(window)] },
    ],
    default: [
      { variant: v("ws", "push", 200), loads: fixed ?? [sat(window), rate(1000), rate(5000), rate(20000)] },
      { variant: v("ws", "push", 8192), loads: [sat(window), rate(5000)] },
      { variant: v("http", "push", 200), loads: [sat(window), rate(5000)] },
      { variant: v("ws", "poke", 200), loads: [sat(window), rate(5000)] },
    ],
    full: (["ws", "http"] as const).flatMap((ingress) =>
      (["push", "poke"] as const).flatMap((mode) =>
        [200, 8192].map((bytes) => ({ variant: v(ingress, mode, bytes), loads: fixed ?? [sat(window), rate(1000), rate(5000), rate(20000)] })),
      ),
    ),
  }[profile];
  const only = list("BENCH_VARIANTS");
  return {
    profile,
    scenarios: new Set(
      (list("BENCH_SCENARIOS") ??
        (profile === "smoke"
          ? ["route", "connections"]
          : profile === "quick"
            ? ["route", "connections", "mqtt", "group", "sse"]
            : ["route", "connections", "mqtt", "overload", "group", "sse", "signalling"])) as ScenarioName[],
    ),
    contenders: (list("BENCH_CONTENDERS") ?? (profile === "smoke" ? ["relay-uws", "service-uws"] : ALL_CONTENDERS)) as ContenderName[],
    rounds: num("BENCH_ROUNDS", profile === "smoke" || profile === "quick" ? 2 : 3),
    roundMs: num("BENCH_ROUND_MS", profile === "smoke" ? 600 : profile === "quick" ? 1000 : 1500),
    rampMs: num("BENCH_RAMP_MS", profile === "smoke" ? 100 : 300),
    drainMs: num("BENCH_DRAIN_MS", 5000),
    warmupMs: num("BENCH_WARMUP_MS", profile === "smoke" ? 300 : 1000),
    workers: num("BENCH_WORKERS", profile === "smoke" ? 1 : 2),
    pairs: num("BENCH_PAIRS", profile === "smoke" ? 4 : 64),
    window,
    httpConnections: num("BENCH_HTTP_CONNECTIONS", 32),
    route: only ? route.filter((r) => only.includes(variantName(r.variant))) : route,
    mqtt: [{ variant: v("mqtt", "push", 200), loads: profile === "quick" ? [sat(window)] : [sat(window), rate(1000), rate(5000)] }],
    mqttPairs: num("BENCH_MQTT_PAIRS", profile === "smoke" ? 4 : 32),
    connections: (list("BENCH_CONNECTIONS") ?? (profile === "smoke" ? ["50"] : profile === "quick" ? ["1000", "2000"] : ["10000", "50000"])).map(Number),
    connectionRounds: num("BENCH_CONNECTION_ROUNDS", profile === "full" ? 2 : 1),
    connectionsPerHolder: num("BENCH_CONNECTIONS_PER_HOLDER", 5_000),
    outDir: env.BENCH_OUT ?? new URL("./results/", import.meta.url).pathname,
  };
}

export function variantName(v: Variant): string {
  return `${v.ingress}/${v.mode}/${v.payloadBytes === 8192 ? "8KiB" : `${v.payloadBytes}B`}`;
}

export function loadName(load: Load): string {
  return load.kind === "saturate" ? "max" : `${load.perSecond >= 1000 ? `${load.perSecond / 1000}k` : load.perSecond}/s`;
}
