import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { afterAll, describe, expect, it } from "vitest";
import { envelope, http } from "./helpers/clients.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { cleanUpRun } from "./helpers/shared-servers.ts";

/**
 * A rolling restart, as a Deployment does it: three nodes on NATS JetStream (bus, signals,
 * transporter) and Redis (presence, mailboxes); each node in turn is taken out of the client's
 * node list (the load balancer), sent SIGTERM, and started again, while senders keep a steady
 * stream going and recipients keep pulling. Clients behave as the contract asks: a send that got
 * no `sent`/202 is sent again with the same messageId (to any live node), a socket closed with 1001
 * reconnects elsewhere, recipients fetch and ack. Nothing accepted may be lost and nothing may be
 * delivered twice (a message fetched again after its ack went through).
 */
const run = randomBytes(4).toString("hex");
const SINKS = 3;
const nodes = new Map<string, RunningService>();
const live: string[] = [];
const dataDirs = new Map<string, string>();

function env(name: string): Record<string, string> {
  return {
    ROUTING_INSTANCE_ID: `roll-${name}-${run}`,
    ROUTING_BUS: "nats",
    ROUTING_STORE: "redis",
    ROUTING_PRESENCE: "redis",
    ROUTING_SIGNALS: "nats",
    ROUTING_REDIS_PREFIX: `test-${run}:`,
    ROUTING_NATS_PREFIX: `test_${run}`,
    ROUTING_TRANSPORTER: "nats://127.0.0.1:4222",
    ROUTING_NAMESPACE: `test-${run}`,
    ROUTING_PRESENCE_TTL_SECONDS: "3",
    ROUTING_BUS_ACK_WAIT_MS: "3000",
    ROUTING_BUS_RETRY_BASE_MS: "50",
    ROUTING_SHUTDOWN_TIMEOUT_MS: "8000",
  };
}

async function start(name: string): Promise<void> {
  // A start under this test's load on a shared 2-core machine can take longer than the usual 30 s.
  const svc = await startService(env(name), dataDirs.get(name), { readyTimeoutMs: 120_000 });
  dataDirs.set(name, svc.dataDir);
  nodes.set(name, svc);
  live.push(name);
}

let pick = 0;
/** The load balancer: round robin over the nodes taking traffic. */
function anyNode(): RunningService {
  return nodes.get(live[pick++ % live.length]) as RunningService;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(async () => {
  for (const svc of nodes.values()) await svc.stop();
  for (const dir of dataDirs.values()) removeDir(dir);
  await cleanUpRun(run);
}, 60_000);

/** A WebSocket sender: one send at a time, every ~20 ms; unanswered sends go again with the same id after a reconnect. */
function wsSender(index: number, accepted: Set<string>, stopped: () => boolean): Promise<void> {
  return (async () => {
    const tok = await token(`urn:sm:user:roll-src-${index}-${run}`);
    let n = 0;
    let pending: string | undefined;
    while (!stopped()) {
      const svc = anyNode();
      const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/connect`, { headers: { authorization: `Bearer ${tok}` } });
      await new Promise<void>((resolve) => {
        const next = (): void => {
          if (stopped() || ws.readyState !== WebSocket.OPEN) return void ws.close();
          pending ??= `ws${index}-${n++}`;
          ws.send(JSON.stringify({ type: "send", ref: pending, envelope: envelope(`urn:sm:user:roll-sink-${n % SINKS}-${run}`, { messageId: pending }) }));
        };
        ws.on("open", next);
        ws.on("message", (data) => {
          const frame = JSON.parse(String(data)) as { type: string; ref?: string; messageId?: string };
          if (frame.type === "sent" && pending !== undefined && frame.messageId === pending) {
            accepted.add(pending);
            pending = undefined;
          }
          // `sent` or an error (SHUTTING_DOWN while draining): the next send (or the same one again) shortly.
          if (frame.type === "sent" || frame.type === "error") setTimeout(next, 20);
        });
        ws.on("close", () => resolve());
        ws.on("error", () => resolve());
      });
      await pause(50);
    }
  })();
}

/** An HTTP sender: a 202 is accepted; anything else is sent again with the same id to the next node. */
function httpSender(index: number, accepted: Set<string>, stopped: () => boolean): Promise<void> {
  return (async () => {
    const tok = await token(`urn:sm:user:roll-http-${index}-${run}`);
    for (let n = 0; !stopped(); n++) {
      const messageId = `h${index}-${n}`;
      for (;;) {
        const res = await http(anyNode().url, "POST", "/send", {
          token: tok,
          body: envelope(`urn:sm:user:roll-sink-${n % SINKS}-${run}`, { messageId }),
        }).catch(() => undefined);
        if (res?.status === 202) {
          accepted.add(messageId);
          break;
        }
        if (stopped()) break;
        await pause(50);
      }
      await pause(20);
    }
  })();
}

/** A recipient: a poke session on some node (reconnecting), and a fetch-then-ack loop; counts what arrives twice. */
function recipient(index: number, received: Map<string, number>, stopped: () => boolean): Promise<void> {
  return (async () => {
    const urn = `urn:sm:user:roll-sink-${index}-${run}`;
    const tok = await token(urn);
    let poked: () => void = () => {};
    let socket: WebSocket | undefined;
    const keepSession = (): void => {
      if (stopped()) return;
      const ws = new WebSocket(`ws://127.0.0.1:${anyNode().port}/connect`, { headers: { authorization: `Bearer ${tok}` } });
      socket = ws;
      ws.on("message", () => poked());
      ws.on("close", () => setTimeout(keepSession, 50));
      ws.on("error", () => {});
    };
    keepSession();
    while (!stopped()) {
      const page = await http(anyNode().url, "GET", "/messages?limit=500", { token: tok }).catch(() => undefined);
      const ids = page?.status === 200 ? (page.body.messages ?? []).map((m) => m.id) : [];
      for (const id of ids) received.set(id, (received.get(id) ?? 0) + 1);
      // The ack is retried until it went through, so a message fetched again would be a real duplicate.
      while (ids.length > 0) {
        const ack = await http(anyNode().url, "POST", "/messages/ack", { token: tok, body: { messageIds: ids } }).catch(() => undefined);
        if (ack?.status === 204) break;
        await pause(50);
      }
      if (ids.length === 0) await new Promise<void>((resolve) => ((poked = resolve), setTimeout(resolve, 200)));
    }
    socket?.close();
  })();
}

describe("rolling restart of three nodes (NATS bus, Redis presence and mailboxes)", () => {
  it("under a steady stream with reconnecting clients: 0 accepted lost, 0 delivered twice, every node exits 0", async () => {
    for (const name of ["a", "b", "c"]) await start(name);
    const accepted = new Set<string>();
    const received = new Map<string, number>();
    let sending = true;
    let receiving = true;
    const senders = [...[0, 1, 2, 3].map((i) => wsSender(i, accepted, () => !sending)), ...[0, 1].map((i) => httpSender(i, accepted, () => !sending))];
    const recipients = Array.from({ length: SINKS }, (_, i) => recipient(i, received, () => !receiving));
    const grows = async (by: number) => {
      const target = accepted.size + by;
      while (accepted.size < target) await pause(20);
    };
    await grows(200);
    const exits: Record<string, number | null> = {};
    for (const name of ["a", "b", "c"]) {
      live.splice(live.indexOf(name), 1); // out of the load balancer first (the preStop delay's job)
      const svc = nodes.get(name) as RunningService;
      exits[name] = await svc.stop();
      await start(name);
      await grows(150);
    }
    sending = false;
    await Promise.all(senders);
    const until = Date.now() + 45_000;
    while ([...accepted].some((id) => !received.has(id)) && Date.now() < until) await pause(100);
    receiving = false;
    await Promise.all(recipients);

    const lost = [...accepted].filter((id) => !received.has(id));
    const twice = [...received].filter(([, count]) => count > 1).map(([id]) => id);
    console.log(`rolling restart: ${accepted.size} accepted, ${received.size} received, ${lost.length} lost, ${twice.length} delivered twice`);
    expect(exits).toEqual({ a: 0, b: 0, c: 0 });
    expect(lost).toEqual([]);
    expect(twice).toEqual([]);
    expect(accepted.size).toBeGreaterThan(600);
  }, 600_000);
});
