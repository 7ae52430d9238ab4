import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackends } from "../backends/factory.ts";
import { loadConfig } from "../config/load.ts";
import { CLOSE } from "../core/close-codes.ts";
import type { Urn } from "../core/urn.ts";
import { envelope, http } from "./helpers/clients.ts";
import { execForm } from "./helpers/dockerfile.ts";
import { processGroup, replayDockerfile, runContainerCmd, runHealthcheck, type ContainerProcess, type ReplayedImage } from "./helpers/image.ts";
import { TEST_SECRET, token } from "./helpers/service.ts";

/**
 * The production image, without Docker: the Dockerfile's stages replayed in temp dirs
 * (test/helpers/image.ts), then the runtime stage's CMD run as the container runs it: that one
 * process (`node dist/bin/main.js`), as the image's non-root user, with production dependencies only.
 */
const ROOT = new URL("../", import.meta.url).pathname;
const SHUTDOWN_TIMEOUT_MS = 10_000;
const SINKS = 10;
let image: ReplayedImage;

beforeAll(() => {
  image = replayDockerfile();
}, 240_000);
afterAll(() => {
  if (image) rmSync(join(image.appDir, ".."), { recursive: true, force: true });
});

describe("the Dockerfile", () => {
  it("has a build stage and a slim runtime stage: production dependencies only, non-root, node as PID 1, a HEALTHCHECK on /healthz", () => {
    const [build, runtime, ...more] = image.stages;
    expect(more).toEqual([]);
    expect(build.name).toBe("build");
    expect(runtime.from).not.toBe(build.from);
    const runs = (stage: typeof build) => stage.steps.filter((s) => s.op === "RUN").map((s) => s.value);
    expect(runs(build).some((r) => r.includes("npm run build") && r.includes("npm prune --omit=dev"))).toBe(true);
    // Nothing is installed in the runtime stage: it only copies the pruned node_modules and dist/.
    expect(runs(runtime).some((r) => /npm (ci|install)/.test(r))).toBe(false);
    const copies = runtime.steps.filter((s) => s.op === "COPY").map((s) => s.value);
    expect(copies).toEqual(expect.arrayContaining(["--from=build /app/node_modules ./node_modules", "--from=build /app/dist ./dist"]));
    const user = runtime.steps.filter((s) => s.op === "USER").map((s) => s.value);
    expect(user.length).toBe(1);
    expect(["root", "0", "0:0"]).not.toContain(user[0]);
    // Exec form with node first: no npm, npx or shell between PID 1 and the service.
    const cmd = runtime.steps.find((s) => s.op === "CMD");
    expect(execForm(cmd?.value ?? "")?.[0]).toBe("node");
    expect(runtime.steps.some((s) => s.op === "ENTRYPOINT")).toBe(false);
    expect(image.cmd).toContain("dist/bin/main.js");
    expect(image.cmd).toContain("--enable-source-maps");
    const stop = runtime.steps.find((s) => s.op === "STOPSIGNAL");
    expect(stop?.value ?? "SIGTERM").toBe("SIGTERM");
    expect(image.healthcheck.join(" ")).toContain("/healthz");
  });

  it("the replayed runtime stage holds every dependency and no devDependency, and dist/ with source maps", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    const modules = join(image.appDir, "node_modules");
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(modules, dep)), dep).toBe(true);
    // A devDependency may only be there as a production package's own dependency (@types/node, ajv).
    const productionTree = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], { cwd: image.buildDir, encoding: "utf8" }).split("\n");
    for (const dep of Object.keys(pkg.devDependencies)) {
      if (existsSync(join(modules, dep))) expect(productionTree, dep).toContain(join(image.buildDir, "node_modules", dep));
    }
    for (const tool of ["typescript", "tsx", "vitest", "playwright-core"]) expect(existsSync(join(modules, tool)), tool).toBe(false);
    expect(existsSync(join(image.appDir, "dist/bin/main.js"))).toBe(true);
    expect(existsSync(join(image.appDir, "dist/bin/main.js.map"))).toBe(true);
    expect(existsSync(join(image.appDir, "dist/bin/mqtt-bridge.js"))).toBe(true);
    // No TypeScript source and no test in the image.
    expect(readdirSync(image.appDir).sort()).toEqual(["dist", "node_modules", "package.json"]);
    expect(existsSync(join(image.appDir, "dist/test"))).toBe(false);
  });
});

/** A WebSocket client that sends envelopes one at a time and records which were answered `sent`. */
interface Sender {
  readonly ws: WebSocket;
  readonly closed: Promise<number>;
}

function sender(port: number, tok: string, index: number, accepted: Set<string>): Promise<Sender> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/connect${index % 2 === 0 ? "" : "?delivery=push"}`, { headers: { authorization: `Bearer ${tok}` } });
  let n = 0;
  const sendNext = (): void => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const messageId = `d${index}-${n++}`;
    ws.send(JSON.stringify({ type: "send", ref: messageId, envelope: envelope(`urn:sm:user:drain-sink-${index % SINKS}`, { messageId }) }));
  };
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data)) as { type: string; messageId?: string };
    if (frame.type === "sent" && frame.messageId) accepted.add(frame.messageId);
    if (frame.type === "sent" || frame.type === "error") sendNext();
  });
  const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      sendNext();
      resolve({ ws, closed });
    });
    ws.once("error", reject);
  });
}

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every message in the data dir's mailboxes of the sinks, and what the bus still holds. */
async function storedIn(dataDir: string): Promise<{ ids: Set<string>; backlog: number }> {
  const { config } = loadConfig({ ROUTING_DATA_DIR: dataDir, ROUTING_JWT_SECRET: TEST_SECRET, ROUTING_LOG_LEVEL: "warn" });
  const backends = await createBackends(config);
  try {
    const ids = new Set<string>();
    for (let i = 0; i < SINKS; i++) for (const e of await backends.mailbox.fetch(`urn:sm:user:drain-sink-${i}` as Urn, 1_000_000)) ids.add(e.messageId);
    return { ids, backlog: (await backends.bus.stats()).backlog };
  } finally {
    await backends.close();
  }
}

/** 200 sockets sending (half poke, half push mode), plus HTTP senders; resolves once `min` sends were accepted. */
async function underLoad(svc: ContainerProcess, min: number) {
  const accepted = new Set<string>();
  const tokens = await Promise.all(Array.from({ length: 200 }, (_, i) => token(`urn:sm:user:drain-src-${i}`)));
  const sockets = await Promise.all(tokens.map((t, i) => sender(svc.port, t, i, accepted)));
  let stopHttp = false;
  const httpToken = await token("urn:sm:user:drain-http");
  const httpSenders = [0, 1].map(async (w) => {
    for (let i = 0; !stopHttp; i++) {
      const messageId = `h${w}-${i}`;
      const res = await http(`http://127.0.0.1:${svc.port}`, "POST", "/send", {
        token: httpToken,
        body: envelope(`urn:sm:user:drain-sink-${i % SINKS}`, { messageId }),
      }).catch(() => undefined);
      if (res === undefined) return;
      if (res.status === 202) accepted.add(messageId);
    }
  });
  await waitUntil(() => accepted.size >= min, 60_000, `${min} accepted sends`);
  return {
    accepted,
    sockets,
    async stopHttp() {
      stopHttp = true;
      await Promise.all(httpSenders);
    },
  };
}

describe("the built service as the container runs it", () => {
  it("SIGTERM under load with 200 open sockets: exit 0 within the deadline, every socket closed 1001, no process left, every accepted message in the mailbox", async () => {
    const svc = await runContainerCmd(image, {
      ROUTING_HTTP_PORT: "0",
      ROUTING_MQTT_PORT: "0",
      ROUTING_HOST: "127.0.0.1",
      ROUTING_JWT_SECRET: TEST_SECRET,
      ROUTING_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    });
    const pid = svc.proc.pid as number;
    expect(await runHealthcheck(image, svc.port)).toBe(0);
    if (image.user.uid !== undefined) expect(readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(new RegExp(`\\nUid:\\s+${image.user.uid}\\s`));
    // The container's processes: the service alone (it spawns nothing).
    expect(processGroup(pid)).toEqual([pid]);

    const load = await underLoad(svc, 2000);
    expect(load.sockets).toHaveLength(200);
    const signalledAt = Date.now();
    process.kill(pid, "SIGTERM");
    // Right after the signal: no new sockets, and readiness is not 200.
    const late = new WebSocket(`ws://127.0.0.1:${svc.port}/connect`, { headers: { authorization: `Bearer ${await token("urn:sm:user:drain-late")}` } });
    const lateOutcome = await new Promise<string>((resolve) => {
      late.once("open", () => resolve("open"));
      late.once("unexpected-response", (_req, res) => resolve(`refused ${res.statusCode}`));
      late.once("error", (err) => resolve(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    expect(lateOutcome).not.toBe("open");
    const readiness = await http(`http://127.0.0.1:${svc.port}`, "GET", "/readyz").then(
      (r) => String(r.status),
      (err: Error) => `error ${err.message}`,
    );
    expect(readiness).not.toBe("200");
    const { code, signal } = await svc.exited;
    const drainMs = Date.now() - signalledAt;
    await load.stopHttp();
    console.log(`drain under load (200 sockets, ${load.accepted.size} accepted): exit ${code} after ${drainMs} ms; late socket: ${lateOutcome}`);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(drainMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    const codes = await Promise.all(load.sockets.map((s) => s.closed));
    expect(codes.filter((c) => c !== CLOSE.GOING_AWAY)).toEqual([]);
    expect(processGroup(pid)).toEqual([]);
    expect(await runHealthcheck(image, svc.port)).not.toBe(0);
    expect(svc.output()).toContain("SIGTERM: draining");

    const { ids, backlog } = await storedIn(image.dataDir);
    const missing = [...load.accepted].filter((id) => !ids.has(id));
    expect(missing).toEqual([]);
    // The router finished what it held: nothing accepted waits on the bus.
    expect(backlog).toBe(0);
  }, 180_000);

  it("a second SIGTERM forces the exit at once; nothing accepted is lost (the next start routes what was left)", async () => {
    const env = { ROUTING_HTTP_PORT: "0", ROUTING_MQTT_PORT: "0", ROUTING_HOST: "127.0.0.1", ROUTING_JWT_SECRET: TEST_SECRET };
    const svc = await runContainerCmd(image, env);
    const load = await underLoad(svc, 1000);
    process.kill(svc.proc.pid as number, "SIGTERM");
    // Two signals sent back to back may arrive as one: the second goes once the drain began (readiness 503).
    for (;;) {
      const res = await http(`http://127.0.0.1:${svc.port}`, "GET", "/readyz");
      if (res.status === 503) break;
    }
    process.kill(svc.proc.pid as number, "SIGTERM");
    const { code } = await svc.exited;
    await load.stopHttp();
    expect(code).toBe(1);
    expect(svc.output()).toContain("SIGTERM again: exiting without finishing the drain");
    const again = await runContainerCmd(image, env);
    process.kill(again.proc.pid as number, "SIGTERM");
    expect((await again.exited).code).toBe(0);
    const { ids, backlog } = await storedIn(image.dataDir);
    expect([...load.accepted].filter((id) => !ids.has(id))).toEqual([]);
    expect(backlog).toBe(0);
  }, 180_000);
});
