import { afterEach, describe, expect, it } from "vitest";
import { createTokenVerifier } from "../auth/jose-verifier.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { createMemoryTicketStore } from "../backends/memory-ticket-store.ts";
import type { Urn } from "../core/urn.ts";
import { createEngine } from "../gateway/create-engine.ts";
import type { GatewayEngine } from "../gateway/engine.ts";
import { createSessionHost } from "../gateway/sessions.ts";
import { createEventStreamRoute } from "../gateway/sse/events.ts";
import { createTickets } from "../gateway/sse/tickets.ts";
import { createMetrics } from "../metrics/registry.ts";
import { waitFor } from "./contracts/fixture.ts";
import { TEST_SECRET, token } from "./helpers/service.ts";
import { openStream } from "./helpers/sse.ts";

/**
 * The MOVED hook of `GET /events` (sharded delivery, issue 15): a stream opened on a node that does
 * not own the caller's shard gets `event: close` {"code": 4010, "url": <owner>} and ends, on both
 * engines, with no session hosted here. Wired to the shard directory once sharded delivery lands.
 */
let engine: GatewayEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

describe.each(["uws", "ws"] as const)("GET /events MOVED hook (%s engine)", (name) => {
  it("answers a stream for a foreign shard with event: close {code: 4010, url} and ends it", async () => {
    const metrics = createMetrics();
    const sessions = createSessionHost({
      instanceId: "n1",
      presence: createMemoryPresenceStore({ ttlMs: 30_000 }),
      metrics,
      maxBufferBytes: 65536,
      authTimeoutMs: 5_000,
      heartbeatMs: 30_000,
      drainTimeoutMs: 1_000,
      log: { warn: () => {} },
    });
    const owners: Record<string, string> = { "urn:sm:user:far": "http://owner.example:8080" };
    const route = createEventStreamRoute({
      verifier: createTokenVerifier({ secret: TEST_SECRET }),
      tickets: createTickets({ store: createMemoryTicketStore() }),
      sessions,
      accepting: () => true,
      movedTo: (identity: Urn) => owners[identity],
    });
    engine = createEngine(name, {
      http: async () => ({ status: 404 }),
      eventStream: route,
      wsPath: "/connect",
      maxBodyBytes: 65536,
      sockets: { upgrade: async () => ({ accept: false, response: { status: 403 } }), open: () => ({ message() {}, pong() {}, drain() {}, closed() {} }) },
    });
    const port = await engine.listen("127.0.0.1", 0);
    const far = await openStream(`http://127.0.0.1:${port}/events`, { authorization: `Bearer ${await token("far")}` });
    expect(far.status).toBe(200);
    const close = await far.next("close");
    expect(JSON.parse(close.data)).toEqual({ code: 4010, url: "http://owner.example:8080" });
    await waitFor(() => far.ended(), "the stream ends");
    expect(sessions.count()).toBe(0);
    // The caller whose shard is here gets a hosted session.
    const near = await openStream(`http://127.0.0.1:${port}/events`, { authorization: `Bearer ${await token("near")}` });
    expect(near.status).toBe(200);
    await waitFor(() => sessions.sessions("urn:sm:user:near" as Urn).some((s) => s.isOnline()), "near online");
    near.close();
    await waitFor(() => sessions.count() === 0, "near gone");
  });
});
