/**
 * The demo (/demo) in headless Chromium: two users in two browser contexts chat through the SDK
 * with end-to-end encryption, across a restart of the service; every message arrives once, and
 * the service's logs, metrics and stored mailbox (the SQLite files, byte for byte) hold only
 * ciphertext. Needs Debian's chromium (.ci/run installs it); without it this test fails, saying so.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { http } from "./helpers/clients.ts";
import { removeDir, startService, type RunningService } from "./helpers/service.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers/chromium.ts";
import { freePort } from "./helpers/ports.ts";

const run = Math.random().toString(36).slice(2, 8);
/** Texts unique to this run, so finding one anywhere on the server side cannot be a coincidence. */
const text = (n: number, from: string) => `plaintext ${from} #${n} ${run} grüße 🔐`;

async function say(page: Page, message: string): Promise<void> {
  await page.locator("#send:not([disabled])").waitFor({ timeout: 30_000 });
  await page.fill("#text", message);
  await page.click("#send");
}

function incoming(page: Page, message: string) {
  return page.locator('#log li[data-dir="in"] .bubble', { hasText: message });
}

describe("demo chat in headless Chromium", () => {
  const services: RunningService[] = [];
  afterAll(async () => {
    for (const s of services) await s.stop();
    if (services[0]) removeDir(services[0].dataDir);
  });

  it("two users chat both ways across a service restart; each message arrives once; the server holds only ciphertext", async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`).toBe(true);
    const port = await freePort();
    const env = { ROUTING_HTTP_PORT: String(port), ROUTING_DEMO: "true", ROUTING_LOG_LEVEL: "debug" };
    let svc = await startService(env);
    services.push(svc);
    const dataDir = svc.dataDir;
    const alice = `alice-${run}`;
    const bob = `bob-${run}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const problems: string[] = [];
    try {
      const open = async (me: string, peer: string) => {
        const context = await browser.newContext({ viewport: { width: 720, height: 640 } });
        const page = await context.newPage();
        page.on("pageerror", (err) => problems.push(`${me} pageerror: ${err.message}`));
        const res = await page.goto(`${svc.url}/demo?me=${me}&peer=${peer}`);
        expect(res?.status()).toBe(200);
        expect(res?.headers()["content-security-policy"]).toContain("script-src 'self'");
        return { context, page };
      };
      const a = await open(alice, bob);
      const b = await open(bob, alice);
      for (const p of [a.page, b.page]) {
        await p.locator('#key[data-key="ready"]').waitFor({ timeout: 30_000 });
        await p.locator('#state[data-state="online"]').waitFor();
      }

      const sent: Array<{ from: Page; to: Page; message: string }> = [];
      const exchange = async (n: number) => {
        sent.push({ from: a.page, to: b.page, message: text(n, "alice") });
        await say(a.page, text(n, "alice"));
        sent.push({ from: b.page, to: a.page, message: text(n, "bob") });
        await say(b.page, text(n, "bob"));
      };
      await exchange(1);
      await exchange(2);
      await incoming(b.page, text(2, "alice")).waitFor({ timeout: 30_000 });
      await incoming(a.page, text(2, "bob")).waitFor({ timeout: 30_000 });

      // Restart in the middle: SIGTERM (sessions closed with 1001), a message written while it is down, then up again on the same port.
      expect(await svc.stop()).toBe(0);
      await a.page.locator('#state:not([data-state="online"])').waitFor();
      sent.push({ from: a.page, to: b.page, message: text(3, "alice") });
      await say(a.page, text(3, "alice"));
      svc = await startService(env, dataDir);
      services.push(svc);
      for (const p of [a.page, b.page]) await p.locator('#state[data-state="online"]').waitFor({ timeout: 60_000 });
      sent.push({ from: b.page, to: a.page, message: text(3, "bob") });
      await say(b.page, text(3, "bob"));
      await exchange(4);

      for (const { from, to, message } of sent) {
        await incoming(to, message).waitFor({ timeout: 60_000 });
        // Its sender sees it delivered and read (the peer's SDK acked it).
        await from.locator('#log li[data-dir="out"][data-status="read"] .bubble', { hasText: message }).waitFor({ timeout: 60_000 });
      }
      // Every message once on each side: nothing doubled by the restart, retries or reconnects.
      for (const { from, to, message } of sent) {
        expect(await incoming(to, message).count(), message).toBe(1);
        expect(await from.locator('#log li[data-dir="out"] .bubble', { hasText: message }).count(), message).toBe(1);
      }
      expect(await a.page.locator('#log li[data-dir="in"]').count()).toBe(4);
      expect(await b.page.locator('#log li[data-dir="in"]').count()).toBe(4);

      if (process.env.DEMO_SCREENSHOT) await a.page.screenshot({ path: process.env.DEMO_SCREENSHOT });

      // One message left unread in bob's mailbox, to inspect what the service stores.
      await b.context.close();
      const last = text(5, "alice");
      await say(a.page, last);
      await a.page.locator('#log li[data-dir="out"][data-status="sent"] .bubble', { hasText: last }).waitFor();
      const bobToken = ((await (await fetch(`${svc.url}/demo/token`, { method: "POST", body: JSON.stringify({ name: bob }) })).json()) as { token: string })
        .token;
      const stored = (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages ?? [];
      const sealed = stored.filter((m) => typeof m.envelope.encryptedSymmetricKey === "string");
      expect(sealed.length).toBeGreaterThanOrEqual(1);
      for (const m of sealed) {
        const data = Buffer.from(m.envelope.encryptedData as string, "base64");
        expect(Buffer.from(m.envelope.encryptedSymmetricKey as string, "base64")).toHaveLength(65); // an ephemeral P-256 public key
        expect(data.length).toBeGreaterThanOrEqual(12 + 16); // IV, ciphertext, GCM tag
        expect(data.toString("utf8")).not.toContain(run);
      }

      // Logs of both runs, metrics, and every byte of the data dir (SQLite files and WAL, freed pages included).
      const plaintexts = [...sent.map((s) => s.message), last];
      const haystacks: Array<[string, Buffer]> = [
        ["logs", Buffer.from(services.map((s) => s.output()).join("\n"))],
        ["metrics", Buffer.from((await http(svc.url, "GET", "/metrics")).text)],
        ...readdirSync(dataDir)
          .filter((f) => statSync(join(dataDir, f)).isFile()) // not the REPL's socket
          .map((f): [string, Buffer] => [`data/${f}`, readFileSync(join(dataDir, f))]),
      ];
      expect(haystacks.some(([name]) => name.startsWith("data/routing"))).toBe(true);
      for (const [name, bytes] of haystacks) {
        for (const p of plaintexts) {
          for (const form of [Buffer.from(p), Buffer.from(Buffer.from(p).toString("base64")), Buffer.from(`#${p.split("#")[1]}`)]) {
            expect(bytes.includes(form), `${name} holds ${form.toString()}`).toBe(false);
          }
        }
      }
      // The search itself finds what is there: the recipient's URN (a header field) is stored in the data dir.
      expect(haystacks.some(([name, bytes]) => name.startsWith("data/") && bytes.includes(Buffer.from(`urn:demo:user:${bob}`)))).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 240_000);
});
