/**
 * The contenders a scenario runs side by side, each in its own process:
 * - relay-uws / relay-ws: the ceiling on each WebSocket engine (no auth, no storage);
 * - socketio: Socket.IO 4 + @socket.io/redis-adapter over the local Redis, JWT auth;
 * - service-uws / service-ws: the service (embedded default) on each gateway engine;
 * - mosquitto: the local Mosquitto relaying MQTT publisher to subscriber (the MQTT ceiling);
 * - aedes: bare aedes (the service's version, in-memory persistence, no auth, no storage) relaying
 *   publisher to subscriber: the ceiling the design (an embedded aedes broker) allows;
 * - baseline-uws (only when named in BENCH_CONTENDERS): the service on uws from another checkout,
 *   BENCH_BASELINE_ROOT, for before/after figures measured in the same run.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import mqtt from "mqtt";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDir, TEST_SECRET } from "../test/helpers/service.ts";
import { spawnServer, type BenchServer } from "./lib/spawn-server.ts";
import type { TargetSpec, Variant } from "./workers/messages.ts";

export type ContenderName = "relay-uws" | "relay-ws" | "socketio" | "service-uws" | "service-ws" | "mosquitto" | "aedes" | "baseline-uws";
export const ALL_CONTENDERS: readonly ContenderName[] = ["relay-uws", "relay-ws", "socketio", "service-uws", "service-ws", "mosquitto", "aedes"];

export interface Contender {
  readonly name: ContenderName;
  /** The process whose RSS is the contender's. */
  readonly pid: number;
  /** Every process whose CPU counts for the contender (Socket.IO: its server and Redis). */
  readonly cpuPids: readonly number[];
  readonly needsTokens: boolean;
  /** Where clients reach it for a variant, or why it does not take part. */
  target(variant: Variant): TargetSpec | { readonly unsupported: string };
  stop(): Promise<void>;
}

export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
export const MQTT_URL = process.env.BENCH_MQTT_URL ?? "mqtt://127.0.0.1:1883";
/** Unique per run: Redis and Mosquitto are shared with other work on the machine. */
export const RUN_ID = `bench-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;

async function redisPid(): Promise<number> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    const info = await redis.info("server");
    return Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
  } finally {
    redis.disconnect();
  }
}

function pidOf(program: string): number {
  try {
    return Number(execFileSync("pidof", ["-s", program], { encoding: "utf8" }).trim()) || 0;
  } catch {
    return 0;
  }
}

async function mosquittoReachable(): Promise<boolean> {
  try {
    const client = await mqtt.connectAsync(MQTT_URL, { connectTimeout: 2000, reconnectPeriod: 0, clientId: `${RUN_ID}-probe` });
    await client.endAsync(true);
    return true;
  } catch {
    return false;
  }
}

const mqttOnly =
  (url: string) =>
  (v: Variant): TargetSpec | { readonly unsupported: string } =>
    v.ingress !== "mqtt" ? { unsupported: "MQTT only" } : { protocol: "mqtt", url, topics: "direct", topicPrefix: RUN_ID };

const wsOnly = (variant: Variant, why: string) => (variant.ingress === "mqtt" ? why : undefined);

const ROOT = new URL("../", import.meta.url).pathname;
const built = new Set<string>();

/**
 * The service as `npm start` runs it: compiled JavaScript (`node --enable-source-maps
 * dist/bin/main.js`, built first if stale), embedded default, ephemeral ports, a fresh data
 * directory. BENCH_SERVICE_TSX=1 runs the TypeScript sources through tsx instead (`npm run dev`).
 */
async function spawnService(root: string, env: Record<string, string>): Promise<{ server: BenchServer; dataDir: string }> {
  const tsx = process.env.BENCH_SERVICE_TSX === "1" || !existsSync(join(root, "scripts/build-if-stale.mjs"));
  if (!tsx && !built.has(root)) {
    execFileSync(process.execPath, [join(root, "scripts/build-if-stale.mjs")], { cwd: root, stdio: "inherit" });
    built.add(root);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "routing-bench-"));
  const settings = {
    ROUTING_HTTP_PORT: "0",
    ROUTING_MQTT_PORT: "0",
    ROUTING_HOST: "127.0.0.1",
    ROUTING_DATA_DIR: dataDir,
    ROUTING_JWT_SECRET: TEST_SECRET,
    ROUTING_LOG_LEVEL: "info",
    ...env,
    ...serviceEnv(),
  };
  const ready = /routing ready: http=(\d+)[^\n]*\n/;
  const server = tsx
    ? await spawnServer("bin/main.ts", settings, { cwd: root, ready })
    : await spawnServer("dist/bin/main.js", settings, { cwd: root, ready, compiled: true, nodeArgs: ["--enable-source-maps"] });
  return { server, dataDir };
}

/** BENCH_SERVICE_ENV="ROUTING_SQLITE_SYNC=normal ROUTING_X=y": settings for the service contenders (experiments). */
function serviceEnv(): Record<string, string> {
  const pairs = (process.env.BENCH_SERVICE_ENV ?? "").split(/\s+/).filter(Boolean);
  return Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]));
}

export async function startContender(name: ContenderName): Promise<Contender> {
  switch (name) {
    case "relay-uws":
    case "relay-ws": {
      const server = await spawnServer(`bench/servers/${name}.ts`);
      const base = `127.0.0.1:${server.port}`;
      return {
        name,
        pid: server.pid,
        cpuPids: [server.pid],
        needsTokens: false,
        target: (v) => {
          const no = wsOnly(v, "a WebSocket relay") ?? (v.mode === "poke" ? "no storage: nothing to pull" : undefined);
          return no ? { unsupported: no } : { protocol: "frames", wsUrl: `ws://${base}`, httpUrl: `http://${base}`, auth: "query" };
        },
        stop: () => server.stop(),
      };
    }
    case "socketio": {
      const redis = await redisPid();
      const server = await spawnServer("bench/servers/socketio.ts", {
        BENCH_JWT_SECRET: TEST_SECRET,
        BENCH_REDIS_URL: REDIS_URL,
        BENCH_REDIS_KEY: `${RUN_ID}-sio`,
      });
      return {
        name,
        pid: server.pid,
        cpuPids: redis ? [server.pid, redis] : [server.pid],
        needsTokens: true,
        target: (v) => {
          if (v.ingress !== "ws") return { unsupported: "Socket.IO events only (no HTTP or MQTT ingress)" };
          if (v.mode === "poke") return { unsupported: "no storage: nothing to pull" };
          return { protocol: "socketio", url: `http://127.0.0.1:${server.port}` };
        },
        stop: () => server.stop(),
      };
    }
    case "service-uws":
    case "service-ws": {
      const engine = name === "service-uws" ? "uws" : "ws";
      // The per-identity send rate (issue 14) would cap a pair's throughput: these rows measure the router.
      const svc = await spawnService(ROOT, { ROUTING_GATEWAY_ENGINE: engine, ROUTING_SEND_RATE_PER_SECOND: "0" });
      const mqttPort = /routing ready:.*\bmqtt=(\d+)/.exec(svc.server.output())?.[1];
      return {
        name,
        pid: svc.server.pid,
        cpuPids: [svc.server.pid],
        needsTokens: true,
        target: (v) => {
          if (v.ingress === "mqtt") {
            if (mqttPort === undefined) return { unsupported: "pending: the service's ready line has no mqtt= port (embedded broker, issue 4)" };
            return { protocol: "mqtt", url: `mqtt://127.0.0.1:${mqttPort}`, topics: "service", topicPrefix: RUN_ID };
          }
          const base = `127.0.0.1:${svc.server.port}`;
          return { protocol: "frames", wsUrl: `ws://${base}`, httpUrl: `http://${base}`, auth: "jwt" };
        },
        async stop() {
          await svc.server.stop();
          // For debugging a run: the service's own log lines.
          if (process.env.BENCH_SERVICE_LOG === "1") process.stderr.write(svc.server.output());
          removeDir(svc.dataDir);
        },
      };
    }
    case "baseline-uws": {
      const root = process.env.BENCH_BASELINE_ROOT;
      if (!root) throw new Error("baseline-uws needs BENCH_BASELINE_ROOT (a checkout to compare with)");
      const svc = await spawnService(root, { ROUTING_GATEWAY_ENGINE: "uws", ROUTING_SEND_RATE_PER_SECOND: "0" });
      const base = `127.0.0.1:${svc.server.port}`;
      const mqttPort = /routing ready:.*\bmqtt=(\d+)/.exec(svc.server.output())?.[1];
      return {
        name,
        pid: svc.server.pid,
        cpuPids: [svc.server.pid],
        needsTokens: true,
        target: (v) => {
          if (v.ingress !== "mqtt") return { protocol: "frames", wsUrl: `ws://${base}`, httpUrl: `http://${base}`, auth: "jwt" };
          if (mqttPort === undefined) return { unsupported: "its ready line has no mqtt= port" };
          return { protocol: "mqtt", url: `mqtt://127.0.0.1:${mqttPort}`, topics: "service", topicPrefix: RUN_ID };
        },
        async stop() {
          await svc.server.stop();
          removeDir(svc.dataDir);
        },
      };
    }
    case "mosquitto": {
      if (!(await mosquittoReachable())) throw new Error(`no MQTT broker at ${MQTT_URL}`);
      const pid = pidOf("mosquitto");
      return {
        name,
        pid,
        cpuPids: pid ? [pid] : [],
        needsTokens: false,
        target: mqttOnly(MQTT_URL),
        stop: async () => {},
      };
    }
    case "aedes": {
      const server = await spawnServer("bench/servers/aedes.ts");
      return {
        name,
        pid: server.pid,
        cpuPids: [server.pid],
        needsTokens: false,
        target: mqttOnly(`mqtt://127.0.0.1:${server.port}`),
        stop: () => server.stop(),
      };
    }
  }
}
