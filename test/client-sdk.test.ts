/**
 * The client SDK (client/) against the real service process over real sockets: exactly-once
 * handling of 500 sends across a kill -9 and restart, in-band token refresh, MOVED, Retry-After.
 */
import { createServer, type Server } from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { Backoff, RoutingClient, tokenExpiry, type ConnectionState, type QueuedMessage } from "../client/src/index.ts";
import { refreshDelayMs } from "../client/src/token.ts";
import { http } from "./helpers/clients.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { freePort } from "./helpers/ports.ts";
import { waitFor as pollUntil } from "./contracts/fixture.ts";

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function user(name: string): string {
  return `urn:sm:user:${name}-${Math.random().toString(36).slice(2, 10)}`;
}

const waitFor = (condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> => pollUntil(condition, what, timeoutMs);

function client(url: string, urn: string, extra: { tokenTtl?: string; onToken?: () => void } = {}): RoutingClient {
  const c = new RoutingClient({
    url,
    token: () => {
      extra.onToken?.();
      return token(urn, extra.tokenTtl ?? "1h");
    },
    WebSocket,
    backoff: { baseMs: 100, maxMs: 1000 },
  });
  cleanups.push(() => c.close());
  return c;
}

const payload = (n: number) => Buffer.from(`n=${n}`).toString("base64");
const numberOf = (m: QueuedMessage) => Number(Buffer.from(m.envelope.encryptedData, "base64").toString().slice(2));

describe("client SDK timing rules", () => {
  it("refreshes at 80 % of a token's life, at the latest 30 s before exp, never before half of it", () => {
    const now = 1_000_000;
    expect(refreshDelayMs(now + 3_600_000, now)).toBe(2_880_000);
    expect(refreshDelayMs(now + 100_000, now)).toBe(70_000);
    expect(refreshDelayMs(now + 3_000, now)).toBe(1_500);
    expect(refreshDelayMs(now - 5_000, now)).toBe(0);
  });

  it("reads exp from a JWT without verifying it, and nothing from garbage", async () => {
    const jwt = await token("urn:sm:user:exp", "1h");
    const exp = tokenExpiry(jwt)!;
    expect(Math.abs(exp - (Date.now() + 3_600_000))).toBeLessThan(5_000);
    expect(tokenExpiry("not.a.jwt")).toBeUndefined();
    expect(tokenExpiry("")).toBeUndefined();
  });

  it("backs off with equal jitter: each delay within [step/2, step], doubling to the cap, never under Retry-After", () => {
    const low = new Backoff({ baseMs: 100, maxMs: 1_000 }, () => 0);
    const high = new Backoff({ baseMs: 100, maxMs: 1_000 }, () => 1);
    expect([1, 2, 3, 4, 5, 6].map(() => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
    expect([1, 2, 3, 4, 5, 6].map(() => high.next())).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    high.reset();
    expect(high.next(5_000)).toBe(5_000);
  });
});

describe("client SDK lifecycle", () => {
  it("close() ends a reconnect backoff at once and rejects sends that wait for a connection", async () => {
    const port = await freePort(); // nothing listens there
    const c = new RoutingClient({ url: `http://127.0.0.1:${port}`, token: () => "t", WebSocket, backoff: { baseMs: 120_000, maxMs: 120_000 } });
    const states: ConnectionState[] = [];
    c.on("state", (s) => states.push(s));
    const pending = c.send({ recipientId: "urn:sm:user:x", encryptedData: payload(0) });
    await waitFor(() => states.includes("offline"), "the first refused connect");
    await c.close(); // a two-minute backoff is running: close must not wait for it (the test would time out)
    await expect(pending).rejects.toMatchObject({ code: "CLIENT_CLOSED" });
    expect(states).toEqual(["connecting", "offline"]);
  }, 20_000);
});

describe("client SDK against the service", () => {
  it("500 sends across a kill -9 and restart: each message handled exactly once, the mailbox ends empty", async () => {
    const port = await freePort();
    const env = { ROUTING_HTTP_PORT: String(port) };
    let svc: RunningService = await startService(env);
    const dataDir = svc.dataDir;
    cleanups.push(() => removeDir(dataDir));
    cleanups.push(() => svc.stop());

    const alice = user("alice");
    const bob = user("bob");
    const sender = client(svc.url, alice);
    const receiver = client(svc.url, bob);
    const counts = new Map<number, number>();
    const states: ConnectionState[] = [];
    receiver.on("state", (s) => states.push(s));
    receiver.on("message", async (m) => {
      const n = numberOf(m);
      counts.set(n, (counts.get(n) ?? 0) + 1);
    });

    let accepted = 0;
    const ids = new Set<string>();
    // Four lanes of sequential sends, so the crash falls among them.
    const sends = Array.from({ length: 4 }, async (_, lane) => {
      for (let i = lane; i < 500; i += 4) {
        // Half carry their own id, half get one from the SDK; both keep it across retries.
        const envelope = {
          recipientId: bob,
          encryptedData: payload(i),
          ...(i % 2 === 0 ? { messageId: `m-${i}-${Math.random().toString(36).slice(2)}` } : {}),
        };
        const id = await sender.send(envelope);
        if (i % 2 === 0) expect(id).toBe(envelope.messageId);
        ids.add(id);
        accepted++;
      }
    });

    await waitFor(() => accepted >= 150 && counts.size >= 50, "a first part accepted and handled");
    await svc.crash();
    expect(accepted).toBeLessThan(500); // the crash really fell in the middle
    svc = await startService(env, dataDir);
    await Promise.all(sends);
    expect(ids.size).toBe(500);
    await waitFor(() => counts.size === 500, "all 500 handled", 60_000);

    // A marker sent after everything: once it is handled, no late repeat is still on its way.
    await sender.send({ recipientId: bob, encryptedData: payload(-1) });
    await waitFor(() => counts.has(-1), "the marker");
    expect([...counts.entries()].filter(([, c]) => c !== 1)).toEqual([]);
    expect(states).toContain("offline");
    expect(states.at(-1)).toBe("online");
    // Every message was acked after its handler: the mailbox drains to empty.
    const bobToken = await token(bob);
    let left = -1;
    for (let i = 0; i < 100 && left !== 0; i++) {
      left = (await http(svc.url, "GET", "/messages?limit=500", { token: bobToken })).body.messages?.length ?? -1;
      if (left !== 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(left).toBe(0);
  }, 120_000);

  it("refreshes its token in-band before it expires: one connection outlives several short tokens", async () => {
    const svc = await startService();
    cleanups.push(() => removeDir(svc.dataDir));
    cleanups.push(() => svc.stop());
    let tokens = 0;
    const me = user("refresh");
    const c = client(svc.url, me, { tokenTtl: "3s", onToken: () => tokens++ });
    const states: ConnectionState[] = [];
    c.on("state", (s) => states.push(s));
    const got: string[] = [];
    c.on("message", (m) => void got.push(m.id));
    // Past two lifetimes of the first token.
    await waitFor(() => tokens >= 4, "three refreshes", 15_000);
    const id = await client(svc.url, user("peer")).send({ recipientId: me, encryptedData: payload(1) });
    await waitFor(() => got.includes(id), "the message on the refreshed connection");
    expect(states).toEqual(["connecting", "online"]);
    expect(svc.output()).not.toMatch(/4002|token expired/);
  }, 30_000);

  it("follows MOVED (4010) to the URL in the close reason, and honours Retry-After on a refused upgrade", async () => {
    const svc = await startService();
    cleanups.push(() => removeDir(svc.dataDir));
    cleanups.push(() => svc.stop());
    // A stand-in node: the first upgrade is refused 429 with Retry-After: 1, the next is closed with MOVED.
    const attempts: number[] = [];
    const server: Server = createServer();
    const wss = new WebSocketServer({ noServer: true });
    server.on("upgrade", (req, socket, head) => {
      attempts.push(Date.now());
      if (attempts.length === 1) {
        socket.end(
          'HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 67\r\n\r\n{"error":{"code":"TOO_MANY_CONNECTIONS","message":"too many conns"}}',
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => ws.close(4010, svc.url));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    cleanups.push(() => wss.close());
    const me = user("moved");
    const c = client(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, me);
    const got: string[] = [];
    c.on("message", (m) => void got.push(m.id));
    const id = await client(svc.url, user("peer")).send({ recipientId: me, encryptedData: payload(2) });
    await waitFor(() => got.includes(id), "the message, pulled from the node MOVED pointed to");
    expect(attempts).toHaveLength(2);
    expect(attempts[1] - attempts[0]).toBeGreaterThanOrEqual(1000);
  }, 30_000);

  it("a handler that throws leaves the message unacked; it comes back and is handled once it succeeds", async () => {
    const svc = await startService();
    cleanups.push(() => removeDir(svc.dataDir));
    cleanups.push(() => svc.stop());
    const me = user("flaky");
    const c = client(svc.url, me);
    let calls = 0;
    const errors: unknown[] = [];
    c.on("error", (e) => void errors.push(e));
    c.on("message", async () => {
      calls++;
      if (calls === 1) throw new Error("not now");
    });
    await client(svc.url, user("peer")).send({ recipientId: me, encryptedData: payload(3) });
    await waitFor(() => calls === 2, "the retried handler");
    expect(errors).toHaveLength(1);
    const meToken = await token(me);
    let left = -1;
    for (let i = 0; i < 100 && left !== 0; i++) {
      left = (await http(svc.url, "GET", "/messages", { token: meToken })).body.messages?.length ?? -1;
      if (left !== 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(left).toBe(0);
  }, 30_000);

  it('transport "sse" needs fetch (refused without one); a send that no retry can fix rejects with its code', async () => {
    // Issue 20 replaced the old refusal of "sse" (no transport existed): it is refused only where no fetch exists.
    const fetchNow = globalThis.fetch;
    try {
      (globalThis as { fetch?: unknown }).fetch = undefined;
      expect(() => new RoutingClient({ url: "http://127.0.0.1:1", token: () => "t", transport: "sse", WebSocket })).toThrow(/sse/);
    } finally {
      globalThis.fetch = fetchNow;
    }
    const svc = await startService();
    cleanups.push(() => removeDir(svc.dataDir));
    cleanups.push(() => svc.stop());
    const c = client(svc.url, user("bad"));
    await expect(c.send({ recipientId: "not-a-urn", encryptedData: payload(4) })).rejects.toMatchObject({ code: "INVALID_ENVELOPE" });
  }, 30_000);
});
