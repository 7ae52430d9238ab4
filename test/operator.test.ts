import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ServiceBroker } from "moleculer";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createMetrics } from "../metrics/registry.ts";
import type { SessionRow } from "../operator/cluster.ts";
import { redactPayloads, redactPayloadsMiddleware } from "../repl/redact.ts";
import { actorsCommand, busCommand, mailboxCommand, presenceCommand, REPL_COMMANDS, routeCommand, sessionsCommand } from "../repl/commands.ts";
import { connect, envelope, http, type TestSocket } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { declared, parseProm, sample, type Series } from "./helpers/prom.ts";
import { token } from "./helpers/service.ts";

let users = 0;
function user(name: string): string {
  return `urn:sm:user:${name}-${++users}-${randomBytes(3).toString("hex")}`;
}

async function waitFor<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("operator tools against a live node (REPL commands, metrics)", () => {
  const nodeId = `operator-${randomBytes(3).toString("hex")}`;
  let n: InProcessNode;
  let broker: ServiceBroker;
  const sockets: TestSocket[] = [];
  const bob = user("bob");
  const carol = user("carol");
  const alice = user("alice");
  const dave = user("dave");

  const scrape = async (): Promise<{ text: string; series: Series[] }> => {
    const text = (await http(n.url, "GET", "/metrics")).text;
    return { text, series: parseProm(text) };
  };
  const routedTotal = async () => sample((await scrape()).series, "routing_routed_total");

  beforeAll(async () => {
    n = await startInProcess({ ROUTING_INSTANCE_ID: nodeId });
    broker = n.node.broker;
    sockets.push(await connect(n.port, { token: await token(bob) }));
    sockets.push(await connect(n.port, { token: await token(bob), delivery: "push" }));
    sockets.push(await connect(n.port, { token: await token(carol), delivery: "push" }));
    sockets.push(await connect(n.port, { token: await token(alice) }));
    // Sessions go online once presence is written.
    await waitFor(async () => {
      const rows = await broker.call<SessionRow[]>("gateway.sessions");
      return rows.length === 4 && rows.every((r) => JSON.stringify(r.state).includes("online"));
    }, "4 online sessions");
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.close()));
    await n?.stop();
  });

  it("sessions, presence, route, mailbox, actors and bus describe the live node", async () => {
    const all = await sessionsCommand(broker);
    expect(all.split("\n")[0]).toBe("4 sessions on 1 node");
    expect(all).toContain("connected since");
    const rows = all.split("\n").slice(3);
    expect(rows).toHaveLength(4);
    for (const row of rows)
      expect(row).toMatch(new RegExp(`^${nodeId}\\s+\\S+\\s+urn:sm:user:\\S+\\s+ws\\s+(poke|push)\\s+online\\S*\\s+\\S+Z \\(\\S+ ago\\)\\s+0$`));
    expect(rows.filter((r) => r.includes(bob))).toHaveLength(2);
    expect(rows.filter((r) => r.includes(carol) && /\spush\s/.test(r))).toHaveLength(1);

    const bobs = await sessionsCommand(broker, bob);
    expect(bobs.split("\n")[0]).toBe(`2 sessions on 1 node for ${bob}`);
    expect(bobs).not.toContain(carol);

    const bobIds = (await broker.call<SessionRow[], { urn: string }>("gateway.sessions", { urn: bob })).map((s) => s.id);
    const presence = await presenceCommand(broker, bob);
    expect(presence.split("\n")[0]).toBe(`${bob}: online, 2 sessions on 1 instance`);
    for (const id of bobIds) expect(presence).toMatch(new RegExp(`${id}\\s+${nodeId}\\s+ws\\s`));
    expect(await presenceCommand(broker, dave)).toBe(`${dave}: offline (no presence entry)`);

    const online = await routeCommand(broker, bob);
    expect(online).toContain(`route to ${bob}`);
    expect(online).toContain(
      "stored message:    delivered_online (online: store in the mailbox, then signal 2 sessions on 1 instance (1 poke, 1 message frame); no push)",
    );
    expect(online).toContain("ephemeral message: ephemeral_delivered (online: message frame to 2 sessions on 1 instance; never stored or pushed)");
    for (const id of bobIds) expect(online).toMatch(new RegExp(`${id}\\s+${nodeId}\\s+ws\\s+(poke|push)\\s+online`));
    const offline = await routeCommand(broker, dave);
    expect(offline).toContain("sessions: none online");
    expect(offline).toContain("stored message:    push_due (offline: store + push due)");
    expect(offline).toContain("ephemeral message: ephemeral_dropped (offline: dropped; ephemeral messages are never stored or pushed)");

    expect(await mailboxCommand(broker, dave)).toBe(`${dave}: mailbox empty`);
    const payloads: string[] = [];
    for (let i = 0; i < 2; i++) {
      const env = envelope(dave);
      payloads.push(env.encryptedData as string);
      expect((await http(n.url, "POST", "/send", { token: await token(alice), body: env })).status).toBe(202);
    }
    await waitFor(async () => (await broker.call<{ count: number }, { urn: string }>("mailbox.depth", { urn: dave })).count === 2, "dave's mailbox");
    const mailbox = await mailboxCommand(broker, dave);
    expect(mailbox).toMatch(new RegExp(`^${dave.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: 2 unacked messages, oldest \\d+(ms|\\.\\ds) old$`));
    for (const p of payloads) expect(mailbox).not.toContain(p);

    const actors = await actorsCommand(broker);
    const hasPush = (await broker.call<Array<{ name: string }>, object>("$node.actions", { skipInternal: true })).some((a) => a.name === "push.stats");
    expect(actors.split("\n")[0]).toBe(`${4 + 1 + (hasPush ? 1 : 0)} actors`);
    expect(actors).toMatch(new RegExp(`^${nodeId}\\s+router\\s+running\\s+inFlight=\\d+ routed=\\d+`, "m"));
    if (hasPush) expect(actors).toMatch(new RegExp(`^${nodeId}\\s+push\\s+\\S+`, "m"));
    const sessionActors = actors.split("\n").filter((l) => /\ssession \S+\s+online/.test(l));
    expect(sessionActors).toHaveLength(4);
    expect(sessionActors.filter((l) => l.includes(`${bob} ws/poke`))).toHaveLength(1);

    await waitFor(async () => (await broker.call<{ bus: { backlog: number } }>("router.stats")).bus.backlog === 0, "an empty bus");
    const bus = await busCommand(broker);
    expect(bus.split("\n")[0]).toMatch(/^node\s+router\s+backlog\s+in flight\s+dead letters\s+oldest unacked\s+routed \(since start\)$/);
    expect(bus).toMatch(new RegExp(`^${nodeId}\\s+running\\s+0\\s+0\\s+0\\s+0ms\\s+\\d+$`, "m"));

    // The REPL definitions print the same text.
    const printed: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((text: unknown) => void printed.push(String(text)));
    try {
      const names = REPL_COMMANDS.map((c) => c.command.split(" ")[0]);
      expect(names).toEqual(["sessions", "presence", "mailbox", "route", "actors", "bus", "deadletters", "replay", "dropdeadletters", "purge", "shards"]);
      await REPL_COMMANDS.find((c) => c.command === "route <urn>")!.action(broker, { urn: dave });
      await REPL_COMMANDS.find((c) => c.command === "presence <urn>")!.action(broker, { urn: "not-a-urn" });
    } finally {
      spy.mockRestore();
    }
    expect(printed[0]).toBe(await routeCommand(broker, dave));
    expect(printed[1]).toMatch(/^error: /);
  });

  it("a scripted run moves every metric by exactly what it did", async () => {
    const { series: before, text: beforeText } = await scrape();
    for (const name of [
      "routing_signals_received_total",
      "routing_signals_delivered_total",
      "routing_mailbox_depth",
      "routing_bus_backlog",
      "routing_bus_oldest_unacked_seconds",
      "routing_end_to_end_latency_seconds",
    ]) {
      expect(declared(beforeText, name), name).toBe(true);
    }
    const routedBefore = sample(before, "routing_routed_total");
    const aliceToken = await token(alice);
    const send = async (body: unknown) => http(n.url, "POST", "/send", { token: aliceToken, body });
    const [, , , aliceSocket] = sockets;

    for (let i = 0; i < 3; i++) expect((await send(envelope(bob))).status).toBe(202); // delivered_online x3
    for (let i = 0; i < 2; i++) {
      aliceSocket.send({ type: "send", ref: `m${i}`, envelope: envelope(carol) }); // delivered_online x2
      expect(await aliceSocket.next((f) => f.ref === `m${i}`)).toMatchObject({ type: "sent" });
    }
    const dupId = `dup-${randomBytes(4).toString("hex")}`;
    expect((await send(envelope(bob, { messageId: dupId }))).status).toBe(202); // delivered_online
    expect((await send(envelope(bob, { messageId: dupId }))).status).toBe(202); // duplicate
    expect((await send(envelope(dave, { isEphemeral: true }))).status).toBe(202); // ephemeral_dropped
    expect((await send(envelope(bob, { isEphemeral: true }))).status).toBe(202); // ephemeral_delivered
    expect((await send(envelope(dave))).status).toBe(202); // push_due
    await broker.call("ingress.accept", { envelope: envelope(dave), identity: alice }); // push_due, path action
    const rejected = await send({ recipientId: bob }); // no encryptedData
    expect([rejected.status, rejected.body.error?.code]).toEqual([400, "INVALID_ENVELOPE"]);
    aliceSocket.send({ type: "send", ref: "bad", envelope: { recipientId: "nobody", encryptedData: "AAAA" } });
    expect(await aliceSocket.next((f) => f.ref === "bad")).toMatchObject({ type: "error", code: "INVALID_ENVELOPE" });

    const routed = 3 + 2 + 1 + 1 + 1 + 1 + 1 + 1;
    await waitFor(async () => (await routedTotal()) === routedBefore + routed || undefined, `${routed} routed records`);
    await waitFor(async () => (await broker.call<{ bus: { backlog: number } }>("router.stats")).bus.backlog === 0, "an empty bus");
    const { series: after } = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);

    expect(delta("routing_envelopes_accepted_total", { path: "http" })).toBe(3 + 2 + 1 + 1 + 1);
    expect(delta("routing_envelopes_accepted_total", { path: "ws" })).toBe(2);
    expect(delta("routing_envelopes_accepted_total", { path: "action" })).toBe(1);
    expect(delta("routing_envelopes_accepted_total", { path: "mqtt" })).toBe(0);
    expect(delta("routing_envelopes_rejected_total", { path: "http", code: "INVALID_ENVELOPE" })).toBe(1);
    expect(delta("routing_envelopes_rejected_total", { path: "ws", code: "INVALID_ENVELOPE" })).toBe(1);
    expect(delta("routing_envelopes_rejected_total")).toBe(2);
    expect(delta("routing_routed_total", { outcome: "delivered_online" })).toBe(6);
    expect(delta("routing_routed_total", { outcome: "duplicate" })).toBe(1);
    expect(delta("routing_routed_total", { outcome: "ephemeral_dropped" })).toBe(1);
    expect(delta("routing_routed_total", { outcome: "ephemeral_delivered" })).toBe(1);
    expect(delta("routing_routed_total", { outcome: "push_due" })).toBe(2);
    expect(delta("routing_end_to_end_latency_seconds_count")).toBe(routed);
    expect(delta("routing_end_to_end_latency_seconds_bucket", { le: "+Inf" })).toBe(routed);
    expect(delta("routing_route_failures_total")).toBe(0);
    // Stored and unacked: 6 delivered online + 2 push due.
    expect(delta("routing_mailbox_depth")).toBe(8);
    expect(sample(after, "routing_bus_backlog", { bus: "embedded" })).toBe(0);
    expect(sample(after, "routing_bus_in_flight", { bus: "embedded" })).toBe(0);
    expect(sample(after, "routing_bus_dead_letters", { bus: "embedded" })).toBe(0);
    expect(sample(after, "routing_bus_oldest_unacked_seconds", { bus: "embedded" })).toBe(0);
    expect(sample(after, "routing_sessions", { protocol: "ws", state: "online" })).toBe(4);
    expect(sample(after, "routing_sessions")).toBe(4);
    expect(delta("routing_http_requests_total", { route: "/send", status: "202" })).toBe(8);
    expect(delta("routing_http_requests_total", { route: "/send", status: "400" })).toBe(1);
    // The local signal bridge delivers in-process: no signal crosses instances here.
    expect(delta("routing_signals_received_total")).toBe(0);
    expect(delta("routing_signals_delivered_total")).toBe(0);
  });

  it("the signal counters count what a receiver gets and delivers", async () => {
    const metrics = createMetrics();
    const counters = metrics.signalCounters();
    counters.received();
    counters.received();
    counters.delivered();
    const series = parseProm(await metrics.scrape());
    expect(sample(series, "routing_signals_received_total")).toBe(2);
    expect(sample(series, "routing_signals_delivered_total")).toBe(1);
  });
});

describe("REPL zero knowledge", () => {
  it("every call made from the REPL's process comes back without payload bytes; clients still get theirs", async () => {
    const n = await startInProcess({}, { middlewares: [redactPayloadsMiddleware] });
    try {
      const rcpt = user("rcpt");
      const sent = envelope(rcpt);
      expect((await http(n.url, "POST", "/send", { token: await token(user("sender")), body: sent })).status).toBe(202);
      const fetched = await waitFor(async () => {
        const list = await n.node.broker.call<Array<{ envelope: Record<string, unknown> }>, { urn: string }>("mailbox.fetch", { urn: rcpt });
        return list.length === 1 ? list : undefined;
      }, "the stored message");
      const shown = JSON.stringify(fetched);
      for (const field of ["encryptedData", "encryptedSymmetricKey", "signature"]) {
        expect(shown).not.toContain(sent[field] as string);
        expect(fetched[0].envelope[field]).toBe(`<redacted: ${(sent[field] as string).length} chars>`);
      }
      expect(fetched[0].envelope.recipientId).toBe(rcpt);
      const pulled = await http(n.url, "GET", "/messages", { token: await token(rcpt) });
      expect(pulled.body.messages![0].envelope.encryptedData).toBe(sent.encryptedData);
    } finally {
      await n.stop();
    }
    expect(redactPayloads([{ a: { signature: "xyz", n: 1 } }, "encryptedData"])).toEqual([{ a: { signature: "<redacted: 3 chars>", n: 1 } }, "encryptedData"]);
  });
});

describe("bus gauges", () => {
  it("show a backlog and its age while no router consumes, per bus", async () => {
    const n = await startInProcess();
    try {
      const broker = n.node.broker;
      // Without its router the node still accepts (the bus is durable) but nothing is consumed.
      await broker.destroyService(broker.getLocalService("router"));
      const t = await token(user("sender"));
      for (let i = 0; i < 3; i++) expect((await http(n.url, "POST", "/send", { token: t, body: envelope(user("rcpt")) })).status).toBe(202);
      await new Promise((r) => setTimeout(r, 120));
      const series = parseProm((await http(n.url, "GET", "/metrics")).text);
      expect(sample(series, "routing_envelopes_accepted_total", { path: "http" })).toBe(3);
      expect(sample(series, "routing_bus_backlog", { bus: "embedded" })).toBe(3);
      expect(sample(series, "routing_bus_in_flight", { bus: "embedded" })).toBe(0);
      expect(sample(series, "routing_bus_oldest_unacked_seconds", { bus: "embedded" })).toBeGreaterThanOrEqual(0.1);
      expect(sample(series, "routing_routed_total")).toBe(0);
      expect(sample(series, "routing_mailbox_depth")).toBe(0);
      expect(await busCommand(broker)).toBe("no router on any node");
    } finally {
      await n.stop();
    }
  });
});

describe("docs/operating.md metric list", () => {
  it("names every metric the registry exports, and no other", () => {
    const readme = readFileSync(new URL("../docs/operating.md", import.meta.url), "utf8");
    const exported = createMetrics()
      .registry.getMetricsAsArray()
      .map((m) => m.name)
      .filter((name) => !name.startsWith("routing_process_") && !name.startsWith("routing_nodejs_"));
    for (const name of exported) expect(readme, name).toMatch(new RegExp("`" + name + "[`{]"));
    const listed = new Set(
      [...readme.matchAll(/`(routing_[a-z0-9_]+)/g)]
        .map((m) => m[1])
        .filter((name) => !name.startsWith("routing_process_") && !name.startsWith("routing_nodejs_")),
    );
    for (const name of listed) expect(exported, name).toContain(name.replace(/_(bucket|sum|count)$/, ""));
  });
});
