/**
 * The SDK's fallback in headless Chromium (issue 20): the page's WebSocket is replaced by one that
 * always errors, as behind a proxy that kills upgrades; the demo's SDK (transport "auto") falls
 * back to GET /events with a ticket and sends over HTTP, and two users exchange messages.
 */
import { existsSync } from "node:fs";
import { chromium, type Page } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { http } from "./helpers/clients.ts";
import { removeDir, startService, type RunningService } from "./helpers/service.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers/chromium.ts";

const run = Math.random().toString(36).slice(2, 8);

/** Runs in the page before any of its scripts: every WebSocket fails before it opens. */
const BREAK_WEBSOCKET = `
  window.__brokenSockets = 0;
  window.WebSocket = class BrokenWebSocket extends EventTarget {
    static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
    constructor(url) {
      super();
      window.__brokenSockets++;
      this.url = String(url); this.readyState = 0; this.protocol = "";
      this.onopen = null; this.onmessage = null; this.onerror = null; this.onclose = null;
      setTimeout(() => {
        this.readyState = 3;
        const error = new Event("error"); this.onerror?.(error); this.dispatchEvent(error);
        const close = Object.assign(new Event("close"), { code: 1006, reason: "", wasClean: false });
        this.onclose?.(close); this.dispatchEvent(close);
      }, 10);
    }
    send() { throw new DOMException("not open", "InvalidStateError"); }
    close() {}
  };
`;

async function say(page: Page, message: string): Promise<void> {
  await page.locator("#send:not([disabled])").waitFor({ timeout: 30_000 });
  await page.fill("#text", message);
  await page.click("#send");
}

describe("SDK fallback to Server-Sent Events in headless Chromium", () => {
  let svc: RunningService | undefined;
  afterAll(async () => {
    await svc?.stop();
    if (svc) removeDir(svc.dataDir);
  });

  it("with WebSocket broken, two users come online over /events and exchange messages", async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`).toBe(true);
    svc = await startService({ ROUTING_DEMO: "true" });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const problems: string[] = [];
    try {
      const open = async (me: string, peer: string) => {
        const context = await browser.newContext();
        await context.addInitScript(BREAK_WEBSOCKET);
        const page = await context.newPage();
        page.on("pageerror", (err) => problems.push(`${me}: ${err.message}`));
        expect((await page.goto(`${svc!.url}/demo?me=${me}&peer=${peer}`))?.status()).toBe(200);
        return page;
      };
      const alice = await open(`alice-${run}`, `bob-${run}`);
      const bob = await open(`bob-${run}`, `alice-${run}`);
      for (const p of [alice, bob]) {
        await p.locator('#key[data-key="ready"]').waitFor({ timeout: 30_000 });
        await p.locator('#state[data-state="online"]').waitFor({ timeout: 30_000 });
        expect(await p.evaluate(() => (window as unknown as { __brokenSockets: number }).__brokenSockets)).toBeGreaterThanOrEqual(1);
      }
      const metrics = (await http(svc.url, "GET", "/metrics")).text;
      expect(metrics).toMatch(/routing_sessions\{protocol="sse",state="online"\} 2/);
      expect(metrics).not.toMatch(/routing_sessions\{protocol="ws",state="online"\} [1-9]/);

      const fromAlice = `hello bob over SSE ${run}`;
      const fromBob = `hello alice over SSE ${run}`;
      await say(alice, fromAlice);
      await bob.locator('#log li[data-dir="in"] .bubble', { hasText: fromAlice }).waitFor({ timeout: 30_000 });
      await say(bob, fromBob);
      await alice.locator('#log li[data-dir="in"] .bubble', { hasText: fromBob }).waitFor({ timeout: 30_000 });
      // Read receipts: each side's SDK acked what it handled, over HTTP.
      await alice.locator('#log li[data-dir="out"][data-status="read"] .bubble', { hasText: fromAlice }).waitFor({ timeout: 30_000 });
      expect(await bob.locator('#log li[data-dir="in"] .bubble', { hasText: fromAlice }).count()).toBe(1);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
