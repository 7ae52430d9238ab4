import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, envelope, http, type TestSocket } from "./helpers/clients.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers/chromium.ts";

/** Debian's `chromium` package (`.ci/run` installs it). */
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`status page browser test SKIPPED: ${CHROMIUM} not found; install Debian's "chromium" package (apt-get install -y chromium)`);

/** Width and height from a PNG's IHDR chunk; throws if the bytes are not a PNG. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!bytes.subarray(0, 8).equals(signature) || bytes.subarray(12, 16).toString("latin1") !== "IHDR") throw new Error("not a PNG");
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

describe("status page", () => {
  const nodeId = `status-node-${process.pid}`;
  let svc: RunningService;
  const sockets: TestSocket[] = [];
  let traffic: Promise<void> | undefined;
  let stopTraffic = false;

  beforeAll(async () => {
    svc = await startService({ ROUTING_INSTANCE_ID: nodeId });
  });
  afterAll(async () => {
    stopTraffic = true;
    await traffic;
    await Promise.all(sockets.map((s) => s.close()));
    expect(await svc?.stop()).toBe(0);
    removeDir(svc.dataDir);
  });

  it("status.json reports nodes, sessions, the bus and throughput without identities", async () => {
    const bob = `urn:sm:user:status-bob-${process.pid}`;
    sockets.push(await connect(svc.port, { token: await token(bob) }), await connect(svc.port, { token: await token(bob), delivery: "push" }));
    const alice = await token("urn:sm:user:status-alice");
    for (let i = 0; i < 3; i++) expect((await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob) })).status).toBe(202);
    let status: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) {
      const res = await http(svc.url, "GET", "/status.json");
      expect(res.status).toBe(200);
      status = res.body;
      const sessions = status.sessions as { total: number };
      if (sessions.total === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toMatchObject({
      node: nodeId,
      nodes: [expect.objectContaining({ id: nodeId, local: true, available: true, sessions: 2 })],
      sessions: { total: 2, byProtocolState: [{ protocol: "ws", state: "online", count: 2 }] },
      bus: [expect.objectContaining({ nodeID: nodeId, router: "running" })],
      problems: [],
    });
    expect(JSON.stringify(status)).not.toContain(bob);
  });

  it.skipIf(!hasChromium)(
    "renders live numbers in headless Chromium",
    async () => {
      const alice = await token("urn:sm:user:status-alice");
      const carol = `urn:sm:user:status-carol-${process.pid}`;
      sockets.push(await connect(svc.port, { token: await token(carol), delivery: "push" }));
      traffic = (async () => {
        while (!stopTraffic) {
          await http(svc.url, "POST", "/send", { token: alice, body: envelope(carol) }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();

      const dir = mkdtempSync(join(tmpdir(), "status-page-"));
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const problems: string[] = [];
        page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
        page.on("console", (msg) => {
          if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
        });
        const response = await page.goto(`${svc.url}/status`);
        expect(response?.status()).toBe(200);
        expect(response?.headers()["content-security-policy"]).toContain("script-src 'sha256-");
        // Rendered, with sessions and some throughput measured over the sampling window.
        await page.waitForFunction(
          () => {
            const num = (id: string) => Number(document.getElementById(id)?.textContent ?? "NaN");
            return document.body.dataset.ready === "true" && num("sessions-total") > 0 && num("accepted-rate") > 0 && num("routed-rate") > 0;
          },
          undefined,
          { timeout: 20_000 },
        );
        const text = await page.evaluate(() => document.body.innerText);
        expect(text).toContain(nodeId);
        const read = (id: string) => page.locator(`#${id}`).textContent();
        expect(Number(await read("sessions-total"))).toBe(3);
        expect(await read("node")).toBe(nodeId);
        expect(await read("backlog")).toMatch(/^\d+$/);
        expect(await read("dead-letters")).toBe("0");
        expect(await read("oldest")).toMatch(/^\d+\.\d$/);
        expect(await page.locator("#sessions tr").count()).toBeGreaterThan(0);
        expect(await page.locator("#nodes tr").first().textContent()).toContain(nodeId);
        expect(text).not.toContain(carol);

        const shot = join(dir, "status.png");
        await page.screenshot({ path: shot, fullPage: true });
        const bytes = readFileSync(shot);
        const { width, height } = pngSize(bytes);
        expect(width).toBe(1280);
        expect(height).toBeGreaterThanOrEqual(600);
        expect(statSync(shot).size).toBeGreaterThan(20_000);
        expect(problems).toEqual([]);
      } finally {
        await browser.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
