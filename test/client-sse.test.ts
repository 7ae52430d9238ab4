/**
 * The client SDK's Server-Sent-Events transport and its WebSocket fallback, and sendBatch, against
 * the real service process over real sockets (issue 20).
 */
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RoutingClient, type ConnectionState, type QueuedMessage } from "../client/src/index.ts";
import { waitFor } from "./contracts/fixture.ts";
import { http } from "./helpers/clients.ts";
import { freePort } from "./helpers/ports.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const user = (name: string) => `urn:sm:user:${name}-${Math.random().toString(36).slice(2, 10)}`;
const payload = (n: number) => Buffer.from(`n=${n}`).toString("base64");
const numberOf = (m: QueuedMessage) => Number(Buffer.from(m.envelope.encryptedData, "base64").toString().slice(2));

/** A WebSocket class whose every connection fails before it opens (a proxy that kills upgrades). */
class BrokenWebSocket {
  readyState = 3;
  protocol = "";
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  static made = 0;
  constructor() {
    BrokenWebSocket.made++;
    setTimeout(() => {
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: "" });
    }, 5);
  }
  send(): void {}
  close(): void {}
}

async function service(env: Record<string, string> = {}): Promise<RunningService> {
  const svc = await startService(env);
  cleanups.push(() => removeDir(svc.dataDir));
  cleanups.push(() => svc.stop());
  return svc;
}

function client(url: string, urn: string, extra: Partial<ConstructorParameters<typeof RoutingClient>[0]> = {}): RoutingClient {
  const c = new RoutingClient({ url, token: () => token(urn), WebSocket, backoff: { baseMs: 100, maxMs: 1000 }, ...extra });
  cleanups.push(() => c.close());
  return c;
}

describe("client SDK over Server-Sent Events", () => {
  it('transport "sse": messages handled once and acked; after a drain (close 1001) and restart it reconnects', async () => {
    const env = { ROUTING_HTTP_PORT: String(await freePort()) };
    const svc = await service(env);
    const [a, b] = [user("a"), user("b")];
    const alice = client(svc.url, a, { transport: "sse" });
    const bob = client(svc.url, b, { transport: "sse", delivery: "push" });
    const got: number[] = [];
    bob.on("message", (m) => void got.push(numberOf(m)));
    const states: ConnectionState[] = [];
    bob.on("state", (s) => states.push(s));
    for (let n = 1; n <= 20; n++) await alice.send({ recipientId: b, encryptedData: payload(n) });
    await waitFor(() => got.length === 20, "20 messages", 30_000);
    expect(got.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await waitFor(async () => ((await http(svc.url, "GET", "/messages", { token: await token(b) })).body.messages?.length ?? -1) === 0, "all acked", 30_000);
    expect(states).toContain("online");
    // SIGTERM: the stream ends with event: close {code: 1001}; the client comes back once the node is up again.
    expect(await svc.stop()).toBe(0);
    await waitFor(() => bob.state !== "online", "offline after the drain", 30_000);
    const again = await startService(env, svc.dataDir);
    cleanups.push(() => again.stop());
    await waitFor(() => bob.state === "online" && alice.state === "online", "online again", 60_000);
    await alice.send({ recipientId: b, encryptedData: payload(21) });
    await waitFor(() => got.length === 21, "the message after the restart", 30_000);
    expect(got.filter((n) => n === 21)).toHaveLength(1);
  }, 90_000);

  it('"auto" falls back to SSE when the WebSocket cannot be opened, and sends over HTTP', async () => {
    const svc = await service();
    const [a, b] = [user("a"), user("b")];
    BrokenWebSocket.made = 0;
    const alice = client(svc.url, a, { WebSocket: BrokenWebSocket });
    const bob = client(svc.url, b, { WebSocket: BrokenWebSocket });
    const got: QueuedMessage[] = [];
    bob.on("message", (m) => void got.push(m));
    await waitFor(() => bob.state === "online" && alice.state === "online", "both online over SSE", 30_000);
    expect(BrokenWebSocket.made).toBeGreaterThanOrEqual(2);
    const id = await alice.send({ recipientId: b, encryptedData: payload(7) });
    await waitFor(() => got.length === 1, "the message", 30_000);
    expect(got[0].id).toBe(id);
    expect(got[0].envelope.senderId).toBe(a);
    const metrics = (await http(svc.url, "GET", "/metrics")).text;
    expect(metrics).toMatch(/routing_sessions\{protocol="sse",state="online"\} 2/);
  }, 60_000);

  it("sendBatch: one request for a group, results in order, a refused item in place, resend stores nothing twice", async () => {
    const svc = await service();
    const sender = user("s");
    const members = Array.from({ length: 5 }, (_, i) => user(`m${i}`));
    const c = client(svc.url, sender);
    const envelopes = [
      ...members.map((m, i) => ({ recipientId: m, encryptedData: payload(i), messageId: `g-${i}` })),
      { recipientId: "not-a-urn", encryptedData: payload(9) },
    ];
    const first = await c.sendBatch(envelopes);
    expect(first.slice(0, 5)).toEqual(members.map((_, i) => ({ messageId: `g-${i}` })));
    expect(first[5]).toMatchObject({ error: { code: "INVALID_ENVELOPE" } });
    const again = await c.sendBatch(envelopes);
    expect(again.slice(0, 5)).toEqual(first.slice(0, 5));
    const probe = await token(members[4]);
    await waitFor(async () => ((await http(svc.url, "GET", "/messages", { token: probe })).body.messages?.length ?? 0) >= 1, "stored", 30_000);
    const later = await c.send({ recipientId: members[4], encryptedData: payload(10), messageId: "later" });
    expect(later).toBe("later");
    let ids: string[] = [];
    await waitFor(
      async () => (ids = ((await http(svc.url, "GET", "/messages", { token: probe })).body.messages ?? []).map((m) => m.id)).includes("later"),
      "later",
      30_000,
    );
    expect(ids.sort()).toEqual(["g-4", "later"]);
  }, 60_000);

  it("sendBatch retries items refused RATE_LIMITED with the same ids until each is accepted", async () => {
    const svc = await service({ ROUTING_SEND_RATE_PER_SECOND: "5", ROUTING_SEND_BURST: "5" });
    const c = client(svc.url, user("s"));
    const to = user("r");
    const results = await c.sendBatch(Array.from({ length: 15 }, (_, i) => ({ recipientId: to, encryptedData: payload(i), messageId: `r-${i}` })));
    expect(results).toEqual(Array.from({ length: 15 }, (_, i) => ({ messageId: `r-${i}` })));
  }, 60_000);
});
