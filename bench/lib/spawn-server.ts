/**
 * Starts a bench server (a relay, the Socket.IO contender) as its own process, like the service,
 * so its CPU and RSS are measured apart from the generator. SERVICE_NODE_ARGS applies to these
 * too (e.g. --cpu-prof), so every contender can be profiled the same way.
 */
import { spawn, type ChildProcess } from "node:child_process";

const ROOT = new URL("../../", import.meta.url).pathname;

export interface BenchServer {
  readonly pid: number;
  readonly port: number;
  readonly proc: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  /** Directory the file is relative to (default: this checkout). */
  readonly cwd?: string;
  /** The ready line; its first group is the port. */
  readonly ready?: RegExp;
  /** Plain JavaScript (the service's compiled dist/): run by node without the tsx loader. */
  readonly compiled?: boolean;
  /** Extra node flags after SERVICE_NODE_ARGS (e.g. --enable-source-maps, as `npm start`). */
  readonly nodeArgs?: readonly string[];
}

export async function spawnServer(file: string, env: Record<string, string> = {}, opts: SpawnOptions = {}): Promise<BenchServer> {
  const nodeArgs = process.env.SERVICE_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  const ready = opts.ready ?? /bench server ready: port=(\d+)/;
  const loader = opts.compiled ? [] : ["--import", "tsx"];
  const proc = spawn(process.execPath, [...nodeArgs, ...(opts.nodeArgs ?? []), ...loader, file], {
    cwd: opts.cwd ?? ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not become ready:\n${out}`)), 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const match = ready.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${file} exited before ready:\n${out}`));
    });
  });
  return {
    pid: proc.pid ?? 0,
    port,
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      await exited;
    },
  };
}
