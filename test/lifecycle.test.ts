import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import { CLOSE } from "../core/close-codes.ts";
import { listenWithFallback } from "../platform/ports.ts";
import { connect, envelope, http } from "./helpers/clients.ts";
import { removeDir, startService, token } from "./helpers/service.ts";

const ROOT = new URL("../", import.meta.url).pathname;

function occupy(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("durability across kill -9", () => {
  it("every message answered 202 or `sent` is in the mailbox after a crash and restart", async () => {
    const svc = await startService({ ROUTING_GATEWAY_ENGINE: "uws" });
    const bob = "urn:sm:user:crash-bob";
    const alice = await token("urn:sm:user:crash-alice");
    const accepted = new Set<string>();
    const ws = await connect(svc.port, { token: alice });
    ws.ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as { type: string; messageId?: string };
      if (frame.type === "sent" && frame.messageId) accepted.add(frame.messageId);
    });
    let stop = false;
    const httpSender = async (worker: number) => {
      for (let i = 0; !stop; i++) {
        const res = await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: `h${worker}-${i}` }) }).catch(() => undefined);
        if (res?.status === 202) accepted.add(res.body.messageId as string);
      }
    };
    const senders = [0, 1, 2, 3].map(httpSender);
    for (let i = 0; i < 200; i++) ws.send({ type: "send", ref: `w${i}`, envelope: envelope(bob, { messageId: `w-${i}` }) });
    await waitFor(async () => (accepted.size >= 300 ? true : undefined));
    await svc.crash();
    stop = true;
    await Promise.all(senders);
    const acceptedBeforeCrash = [...accepted];
    expect(acceptedBeforeCrash.length).toBeGreaterThanOrEqual(300);

    const again = await startService({ ROUTING_GATEWAY_ENGINE: "uws" }, svc.dataDir);
    try {
      const bobToken = await token(bob);
      // Drain the mailbox page by page (fetch, then ack what was read) until every accepted id showed up.
      const seen: string[] = [];
      const ids = await waitFor(async () => {
        const page = (await http(again.url, "GET", "/messages?limit=500", { token: bobToken })).body.messages ?? [];
        if (page.length > 0) {
          seen.push(...page.map((m) => m.id));
          await http(again.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: page.map((m) => m.id) } });
        }
        const stored = new Set(seen);
        return acceptedBeforeCrash.every((id) => stored.has(id)) ? stored : undefined;
      });
      expect(seen.length).toBe(ids.size); // stored once each, no duplicates from redelivery
      for (const id of acceptedBeforeCrash) expect(ids.has(id)).toBe(true);
    } finally {
      expect(await again.stop()).toBe(0);
      removeDir(svc.dataDir);
    }
  }, 60_000);
});

describe("graceful shutdown", () => {
  for (const engine of ["uws", "ws"] as const) {
    it(`SIGTERM drains sessions with 1001 and exits 0 in bounded time (${engine})`, async () => {
      const svc = await startService({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_SHUTDOWN_TIMEOUT_MS: "4000" });
      const t = await token("urn:sm:user:leaving");
      const sockets = await Promise.all([connect(svc.port, { token: t }), connect(svc.port, { token: t, delivery: "push" })]);
      const started = Date.now();
      const code = await svc.stop();
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      for (const s of sockets) expect((await s.closed).code).toBe(CLOSE.GOING_AWAY);
      expect(svc.output()).toContain("SIGTERM: draining");
      removeDir(svc.dataDir);
    }, 30_000);
  }
});

describe("start-up rules", () => {
  it("an explicitly set port that is taken stops start-up with a clear error", async () => {
    const { server, port } = await occupy();
    try {
      const run = spawnSync(process.execPath, ["--import", "tsx", "bin/main.ts"], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          ROUTING_HTTP_PORT: String(port),
          ROUTING_HOST: "127.0.0.1",
          ROUTING_JWT_SECRET: "x".repeat(32),
          ROUTING_DATA_DIR: `/tmp/routing-port-${port}`,
        },
        encoding: "utf8",
        timeout: 20_000,
      });
      expect(run.status).not.toBe(0);
      expect(run.stderr + run.stdout).toContain(`http port ${port} is already in use`);
      removeDir(`/tmp/routing-port-${port}`);
    } finally {
      server.close();
    }
  });

  it("a taken default port moves to the next free one and says so", async () => {
    const { server, port } = await occupy();
    const lines: string[] = [];
    try {
      const bound = await listenWithFallback(
        "http",
        (p) =>
          new Promise<number>((resolve, reject) => {
            const s = createServer();
            s.once("error", reject);
            s.listen(p, "127.0.0.1", () => {
              s.close();
              resolve(p);
            });
          }),
        port,
        false,
        { info: (m) => lines.push(m) },
      );
      expect(bound).toBeGreaterThan(port);
      expect(lines).toEqual([`http port ${port} is taken; using ${bound} instead`]);
    } finally {
      server.close();
    }
  });

  it("unknown ROUTING_* variables and invalid values stop start-up, naming each", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "bin/main.ts"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ROUTING_HTTP_PORTT: "1", ROUTING_MAX_ENVELOPE_BYTES: "lots", ROUTING_GATEWAY_ENGINE: "netty" },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("ROUTING_HTTP_PORTT is not a known setting");
    expect(run.stderr).toContain("ROUTING_MAX_ENVELOPE_BYTES");
    expect(run.stderr).toContain("ROUTING_GATEWAY_ENGINE");
  });
});
