import { EventSource } from "eventsource";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Urn } from "../core/urn.ts";
import { waitFor } from "./contracts/fixture.ts";
import { envelope, http } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { token } from "./helpers/service.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";
import { openStream } from "./helpers/sse.ts";

/** `GET /events` and `POST /tickets` on both engines, with real clients over real sockets (issue 20). */

interface Received {
  readonly type: string;
  readonly data: string;
}

/** The `eventsource` package's EventSource (a WHATWG EventSource in Node): what a browser runs. */
function eventSource(url: string): Promise<{ es: EventSource; received: Received[] }> {
  const es = new EventSource(url);
  const received: Received[] = [];
  for (const type of ["poke", "message", "close"]) es.addEventListener(type, (e) => received.push({ type, data: (e as MessageEvent<string>).data }));
  return new Promise((resolve, reject) => {
    es.onopen = () => resolve({ es, received });
    es.onerror = (err) => {
      es.close();
      reject(new Error(`EventSource failed: ${String((err as { code?: number }).code)}`));
    };
  });
}

describe.each(["uws", "ws"] as const)("Server-Sent Events on the %s engine", (engine) => {
  let node: InProcessNode;
  let alice: string;
  let bob: string;
  beforeAll(async () => {
    node = await startInProcess({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_MAX_CONNECTIONS_PER_IDENTITY: "2", ROUTING_HEARTBEAT_SECONDS: "1" });
    alice = await token("alice");
    bob = await token("bob");
  });
  afterAll(async () => {
    await node?.stop();
  });

  const ticket = async (jwt: string): Promise<string> => {
    const res = await http(node.url, "POST", "/tickets", { token: jwt });
    expect(res.status).toBe(200);
    expect(res.body.expiresIn).toBe(30);
    expect(res.headers.get("cache-control")).toBe("no-store");
    return res.body.ticket as string;
  };

  it("an EventSource with a ticket gets messages (push) and pokes (poke), as WebSocket frames", async () => {
    const push = await eventSource(`${node.url}/events?delivery=push&ticket=${await ticket(bob)}`);
    const poke = await eventSource(`${node.url}/events?ticket=${await ticket(bob)}`);
    try {
      await waitFor(
        () => node.node.sessions.sessions("urn:sm:user:bob" as Urn).filter((s) => s.protocol === "sse" && s.isOnline()).length === 2,
        "two sse sessions online",
      );
      const sent = envelope("urn:sm:user:bob");
      const res = await http(node.url, "POST", "/send", { token: alice, body: sent });
      expect(res.status).toBe(202);
      await waitFor(() => push.received.some((r) => r.type === "message") && poke.received.some((r) => r.type === "poke"), "message and poke");
      const frame = JSON.parse(push.received.find((r) => r.type === "message")!.data);
      expect(frame.type).toBe("message");
      expect(frame.message.id).toBe(res.body.messageId);
      expect(frame.message.envelope.encryptedData).toBe(sent.encryptedData);
      expect(frame.message.envelope.senderId).toBe("urn:sm:user:alice");
      expect(JSON.parse(poke.received.find((r) => r.type === "poke")!.data)).toEqual({ type: "poke" });
    } finally {
      push.es.close();
      poke.es.close();
    }
    // Closing the stream ends the session and its presence.
    await waitFor(() => node.node.sessions.sessions("urn:sm:user:bob" as Urn).length === 0, "sessions gone");
  });

  it("a Bearer header opens a stream too (fetch clients); pings arrive as comments", async () => {
    const stream = await openStream(`${node.url}/events?delivery=push`, { authorization: `Bearer ${bob}` });
    try {
      expect(stream.status).toBe(200);
      expect(stream.contentType).toMatch(/^text\/event-stream/);
      await waitFor(() => stream.comments.includes("ping"), "a : ping comment", 10_000);
      const res = await http(node.url, "POST", "/send", { token: alice, body: envelope("urn:sm:user:bob", { isEphemeral: true }) });
      expect(res.status).toBe(202);
      const message = await stream.next("message");
      expect(JSON.parse(message.data).message.envelope.isEphemeral).toBe(true);
      // Still online after several heartbeats: the stream's pings count as answered while it reads.
      await waitFor(() => stream.comments.filter((c) => c === "ping").length >= 3, "three pings", 10_000);
      expect(stream.ended()).toBe(false);
    } finally {
      stream.close();
    }
  });

  it("a ticket works once: the second use is 401 and opens no stream", async () => {
    const t = await ticket(bob);
    const first = await openStream(`${node.url}/events?ticket=${t}`);
    expect(first.status).toBe(200);
    const second = await openStream(`${node.url}/events?ticket=${t}`);
    expect(second.status).toBe(401);
    expect(JSON.parse(second.body).error.code).toBe("TOKEN_INVALID");
    first.close();
  });

  it("a JWT in the query string is refused (401, no stream), as is a missing or bad credential", async () => {
    for (const query of [`token=${bob}`, `access_token=${bob}`, `ticket=${bob}`, `jwt=${bob}`]) {
      const res = await openStream(`${node.url}/events?${query}`);
      expect(res.status, query.split("=")[0]).toBe(401);
      expect(res.body).not.toContain(bob);
    }
    expect((await openStream(`${node.url}/events`)).status).toBe(401);
    expect((await openStream(`${node.url}/events?ticket=nope`)).status).toBe(401);
    expect((await openStream(`${node.url}/events`, { authorization: "Bearer not-a-jwt" })).status).toBe(401);
    expect((await openStream(`${node.url}/events?delivery=sideways`, { authorization: `Bearer ${bob}` })).status).toBe(400);
    expect((await http(node.url, "POST", "/tickets")).status).toBe(401);
  });

  it("the per-identity connection limit counts streams: one over it is 429, no stream", async () => {
    const carol = await token("carol");
    const a = await openStream(`${node.url}/events`, { authorization: `Bearer ${carol}` });
    const b = await openStream(`${node.url}/events?ticket=${await ticket(carol)}`);
    expect([a.status, b.status]).toEqual([200, 200]);
    const c = await openStream(`${node.url}/events`, { authorization: `Bearer ${carol}` });
    expect(c.status).toBe(429);
    expect(JSON.parse(c.body).error.code).toBe("TOO_MANY_CONNECTIONS");
    a.close();
    // The slot comes back when a stream ends.
    await waitFor(async () => {
      const d = await openStream(`${node.url}/events`, { authorization: `Bearer ${carol}` });
      d.close();
      return d.status === 200;
    }, "a slot freed");
    b.close();
  });

  it("a stream opened with a ticket ends with event: close {code: 4002} when the token behind the ticket expires", async () => {
    const short = await token("frank", "3s");
    const stream = await openStream(`${node.url}/events?ticket=${await ticket(short)}`);
    expect(stream.status).toBe(200);
    const close = await stream.next("close", 0, 15_000);
    expect(JSON.parse(close.data)).toEqual({ code: 4002 });
    await waitFor(() => stream.ended(), "stream ended");
  });

  it("metrics count sse sessions and the /events and /tickets routes", async () => {
    const stream = await openStream(`${node.url}/events`, { authorization: `Bearer ${alice}` });
    await waitFor(() => node.node.sessions.sessions("urn:sm:user:alice" as Urn).some((s) => s.isOnline()), "online");
    const metrics = (await http(node.url, "GET", "/metrics")).text;
    expect(metrics).toMatch(/routing_sessions\{protocol="sse",state="online"\} [1-9]/);
    expect(metrics).toMatch(/routing_http_requests_total\{route="\/tickets",status="200"\} [1-9]/);
    stream.close();
  });
});

describe("tickets across a cluster sharing Redis", () => {
  it("a ticket issued by one node opens a stream on another, once: a second use on either is 401", async () => {
    const prefix = `routing-test-${Math.random().toString(36).slice(2, 10)}:`;
    const env = { ROUTING_PRESENCE: "redis", ROUTING_REDIS_PREFIX: prefix };
    const a = await startInProcess(env);
    const b = await startInProcess(env);
    try {
      const bob = await token("bob");
      const issued = await http(a.url, "POST", "/tickets", { token: bob });
      expect(issued.status).toBe(200);
      const t = issued.body.ticket as string;
      const onB = await openStream(`${b.url}/events?ticket=${t}`);
      expect(onB.status).toBe(200);
      expect((await openStream(`${a.url}/events?ticket=${t}`)).status).toBe(401);
      expect((await openStream(`${b.url}/events?ticket=${t}`)).status).toBe(401);
      onB.close();
    } finally {
      await a.stop();
      await b.stop();
      const admin = new Redis(process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
      await deleteRedisKeys(admin, prefix);
      await admin.quit();
    }
  });
});
