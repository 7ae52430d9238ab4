import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import uws from "uWebSockets.js";
import { afterAll, describe, expect, it } from "vitest";
import type { GatewayEngine } from "../gateway/engine.ts";
import { createEngine } from "../gateway/create-engine.ts";
import { lockDataDir, readNodeFile } from "../platform/data-dir-lock.ts";
import { listenWithFallback } from "../platform/ports.ts";
import { pidsListeningOn } from "./helpers/proc-net.ts";
import { removeDir, startService, TEST_SECRET, type RunningService } from "./helpers/service.ts";
import { freePort } from "./helpers/ports.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const dirs: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "routing-excl-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => dirs.forEach(removeDir));

interface Run {
  readonly code: number | null;
  readonly output: string;
}

/** `npm start`'s entry as its own process; resolves when it exits, or fails the test if it becomes ready instead. */
function runExpectingRefusal(env: Record<string, string>): Promise<Run> {
  const proc = spawn(process.execPath, ["--import", "tsx", "bin/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ROUTING_HOST: "127.0.0.1", ROUTING_JWT_SECRET: TEST_SECRET, ROUTING_MQTT_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/routing ready: /.test(output)) {
        proc.kill("SIGKILL");
        reject(new Error(`the second process started instead of refusing:\n${output}`));
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.once("exit", (code) => resolve({ code, output }));
  });
}

/** A bare uWebSockets.js app on the port with uWS's default options (SO_REUSEPORT), as another uWS server would. */
function uwsSqueezer(port: number): Promise<uws.us_listen_socket> {
  return new Promise((resolve, reject) => {
    uws.App().listen("127.0.0.1", port, (socket) => (socket ? resolve(socket) : reject(new Error(`uWS could not bind ${port}`))));
  });
}

function engine(kind: "uws" | "ws", reusePort = false): GatewayEngine {
  return createEngine(kind, {
    http: async () => ({ status: 204 }),
    sockets: { upgrade: async () => ({ accept: false, response: { status: 404 } }), open: () => ({ message() {}, pong() {}, drain() {}, closed() {} }) },
    wsPath: "/connect",
    maxBodyBytes: 1024,
    reusePort,
  });
}

describe("one process per port and data dir (processes, read from /proc/net/tcp)", () => {
  it("a second service on the same explicit port exits non-zero with the message and only the first listens; a third on the same data dir refuses naming the pid", async () => {
    const port = await freePort();
    const first: RunningService = await startService({ ROUTING_HTTP_PORT: String(port), ROUTING_GATEWAY_ENGINE: "uws" }, dataDir());
    try {
      expect(first.port).toBe(port);
      const firstPid = first.proc.pid!;
      expect(pidsListeningOn(port)).toEqual(new Set([firstPid]));

      const second = await runExpectingRefusal({ ROUTING_HTTP_PORT: String(port), ROUTING_DATA_DIR: dataDir() });
      expect(second.code).not.toBe(0);
      expect(second.output).toContain(`port ${port} is already in use`);
      expect(pidsListeningOn(port)).toEqual(new Set([firstPid]));

      const third = await runExpectingRefusal({ ROUTING_HTTP_PORT: "0", ROUTING_DATA_DIR: first.dataDir });
      expect(third.code).not.toBe(0);
      expect(third.output).toContain(`is in use by process ${firstPid}`);
      expect(readNodeFile(first.dataDir)?.pid).toBe(firstPid);
      expect(pidsListeningOn(port)).toEqual(new Set([firstPid]));
    } finally {
      await first.stop();
    }
  }, 90_000);

  it("a data dir whose holder was killed (kill -9) is taken over; node.json then names the new holder", async () => {
    const dir = dataDir();
    const holder = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "-e",
        `import("${ROOT}platform/data-dir-lock.ts").then((m) => m.lockDataDir(${JSON.stringify(dir)}, "doomed")).then(() => { console.log("locked"); setInterval(() => {}, 60_000); })`,
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    await new Promise<void>((resolve) => holder.stdout.on("data", (c: Buffer) => String(c).includes("locked") && resolve()));
    await expect(lockDataDir(dir, "second")).rejects.toThrow(`is in use by process ${holder.pid}`);
    const exited = new Promise((resolve) => holder.once("exit", resolve));
    holder.kill("SIGKILL");
    await exited;
    expect(readNodeFile(dir)?.pid).toBe(holder.pid); // left behind by the crash, naming a dead pid
    const lock = await lockDataDir(dir, "heir");
    try {
      expect(readNodeFile(dir)).toMatchObject({ pid: process.pid, instanceId: "heir" });
    } finally {
      lock.release();
    }
    expect(readNodeFile(dir)).toBeUndefined();
  }, 30_000);

  it("a node.json naming a pid that no longer exists does not block a start", async () => {
    const dir = dataDir();
    writeFileSync(join(dir, "node.json"), JSON.stringify({ pid: 2 ** 22 + 12345, instanceId: "gone", startedAt: new Date(0).toISOString() }));
    const lock = await lockDataDir(dir, "fresh");
    expect(JSON.parse(readFileSync(join(dir, "node.json"), "utf8"))).toMatchObject({ pid: process.pid, instanceId: "fresh" });
    lock.release();
  });
});

describe("engines never share a port unless ROUTING_HTTP_REUSE_PORT asks", () => {
  const log = (lines: string[]) => ({ info: (m: string) => lines.push(m) });

  it("uws: a port another uWS server holds is taken: an explicit one stops start-up, a default one moves on", async () => {
    const port = await freePort();
    const squeezer = await uwsSqueezer(port);
    const explicit = engine("uws");
    const fallback = engine("uws");
    try {
      await expect(listenWithFallback("http", (p) => explicit.listen("127.0.0.1", p), port, true, log([]))).rejects.toThrow(
        `http port ${port} is already in use`,
      );
      const lines: string[] = [];
      const bound = await listenWithFallback("http", (p) => fallback.listen("127.0.0.1", p), port, false, log(lines));
      expect(bound).toBeGreaterThan(port);
      expect(lines).toEqual([`http port ${port} is taken; using ${bound} instead`]);
      expect(pidsListeningOn(port)).toEqual(new Set([process.pid]));
      expect(pidsListeningOn(bound)).toEqual(new Set([process.pid]));
    } finally {
      uws.us_listen_socket_close(squeezer);
      await explicit.close();
      await fallback.close();
    }
  });

  it("uws: a port this engine holds cannot be shared by another uWS server", async () => {
    const held = engine("uws");
    // A fixed port: an ephemeral one could not be joined even with SO_REUSEPORT on both sides.
    const port = await held.listen("127.0.0.1", await freePort());
    try {
      await expect(uwsSqueezer(port)).rejects.toThrow(`uWS could not bind ${port}`);
    } finally {
      await held.close();
    }
  });

  it("ws: a taken default port moves on as well", async () => {
    const port = await freePort();
    const squeezer = createServer().listen(port, "127.0.0.1");
    await new Promise((r) => squeezer.once("listening", r));
    const e = engine("ws");
    try {
      const lines: string[] = [];
      const bound = await listenWithFallback("http", (p) => e.listen("127.0.0.1", p), port, false, log(lines));
      expect(bound).toBeGreaterThan(port);
      expect(lines).toEqual([`http port ${port} is taken; using ${bound} instead`]);
    } finally {
      squeezer.close();
      await e.close();
    }
  });

  it("ROUTING_HTTP_REUSE_PORT: two uws engines share the port; the ws engine refuses the setting", async () => {
    const a = engine("uws", true);
    const b = engine("uws", true);
    try {
      // A fixed port: Linux does not let a second SO_REUSEPORT socket join an ephemeral (port 0) one.
      const port = await a.listen("127.0.0.1", await freePort());
      expect(await b.listen("127.0.0.1", port)).toBe(port);
      expect(pidsListeningOn(port)).toEqual(new Set([process.pid]));
    } finally {
      await a.close();
      await b.close();
    }
    expect(() => engine("ws", true)).toThrow("ROUTING_HTTP_REUSE_PORT needs ROUTING_GATEWAY_ENGINE=uws");
  });
});
