import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { mintDevToken } from "../../auth/mint.ts";

export const TEST_SECRET = "test-secret-0123456789abcdef-routing";
const ROOT = new URL("../../", import.meta.url).pathname;

export interface RunningService {
  readonly port: number;
  /** The embedded MQTT broker's TCP port (`mqtt=<port>` in the ready line); undefined with an external broker. */
  readonly mqttPort: number | undefined;
  readonly url: string;
  readonly dataDir: string;
  readonly proc: ChildProcess;
  /** Every line the process printed so far. */
  readonly output: () => string;
  /** SIGTERM and wait for exit; resolves the exit code. */
  stop(): Promise<number | null>;
  /** kill -9, no goodbye. */
  crash(): Promise<void>;
}

/**
 * Starts the service from its sources (`node --import tsx bin/main.ts`, what `npm run dev` runs;
 * `npm start` runs the same code compiled, which test/production.test.ts runs as the image does),
 * as its own process on ephemeral ports, and waits for its one ready line.
 */
export async function startService(
  env: Record<string, string> = {},
  dataDir?: string,
  options: { entry?: string; readyTimeoutMs?: number } = {},
): Promise<RunningService> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "routing-e2e-"));
  // SERVICE_NODE_ARGS (in the caller's environment) adds node flags, e.g. "--cpu-prof" for profiling.
  const nodeArgs = process.env.SERVICE_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  // options.entry: another entry point with the same ready line, e.g. "bin/mqtt-bridge.ts".
  const proc = spawn(process.execPath, [...nodeArgs, "--import", "tsx", options.entry ?? "bin/main.ts"], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ROUTING_HTTP_PORT: "0",
      ROUTING_HOST: "127.0.0.1",
      ROUTING_DATA_DIR: dir,
      ROUTING_JWT_SECRET: TEST_SECRET,
      // Ephemeral, like the HTTP port: Mosquitto holds the default 1883 on test machines.
      ROUTING_MQTT_PORT: "0",
      ROUTING_LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not become ready:\n${out}`)), options.readyTimeoutMs ?? 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      // The whole line (a chunk may end inside a port number).
      const match = /routing ready: http=(\d+)[^\n]*\n/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`service exited (${code}) before ready:\n${out}`));
    });
  });
  const mqttPort = /routing ready: http=\d+ mqtt=(\d+)/.exec(out)?.[1];
  return {
    port,
    mqttPort: mqttPort === undefined ? undefined : Number(mqttPort),
    url: `http://127.0.0.1:${port}`,
    dataDir: dir,
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      return exited;
    },
    async crash() {
      proc.kill("SIGKILL");
      await exited;
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function token(subject: string, expiresIn = "1h"): Promise<string> {
  return mintDevToken(TEST_SECRET, subject, { expiresIn });
}

/** A token with any `sub`, valid or not (mintDevToken refuses subjects the verifier would). */
export function tokenWithSubject(sub: string): Promise<string> {
  return new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("1h").sign(new TextEncoder().encode(TEST_SECRET));
}
