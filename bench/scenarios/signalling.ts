/**
 * The signalling scenario (issue 15, seed 003): three node processes (NATS bus and signals, Redis
 * store and presence, Moleculer over NATS), the same offered load for each delivery strategy,
 * `broadcast`, `targeted` and `sharded`, one after the other in one run. Every recipient is online
 * (push mode) on one node: for `sharded` on its shard's owner (GET /route), else spread evenly.
 * Sends go over POST /send to the three nodes in turn, at BENCH_SIGNAL_RATE msg/s for
 * BENCH_SIGNAL_SECONDS. Per node: signals received and delivered (routing_signals_*_total), the
 * noise ratio delivered / received (the seed expects about 1/N for broadcast, about 1.0 for
 * sharded), and the CPU the three nodes used per delivered message, each strategy as a ratio of
 * broadcast's.
 */
import { deleteRedisKeys } from "../lib/redis-cleanup.ts";
import { randomBytes } from "node:crypto";
import { connect as natsConnect } from "nats";
import WebSocket from "ws";
import { removeDir, startService, token, type RunningService } from "../../test/helpers/service.ts";

export type Strategy = "broadcast" | "targeted" | "sharded";

export interface SignallingRow {
  readonly strategy: Strategy;
  readonly offeredPerSecond: number;
  readonly sent: number;
  readonly accepted: number;
  /** Messages that reached their recipient's socket. */
  readonly delivered: number;
  readonly perNode: ReadonlyArray<{ readonly node: string; readonly received: number; readonly delivered: number; readonly cpuSeconds: number }>;
  /** Σ delivered / Σ received over the three nodes. */
  readonly noiseRatio: number;
  readonly cpuSeconds: number;
  readonly cpuMsPerDelivered: number;
  /** cpuMsPerDelivered / broadcast's. */
  readonly cpuRatioToBroadcast: number;
}

const NODES = 3;

function counter(text: string, name: string): number {
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, "m").exec(text)?.[1] ?? 0);
}

async function scrape(node: RunningService): Promise<{ received: number; delivered: number; cpu: number }> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return {
    received: counter(text, "routing_signals_received_total"),
    delivered: counter(text, "routing_signals_delivered_total"),
    cpu: counter(text, "routing_process_cpu_seconds_total"),
  };
}

async function until(probe: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function cleanup(tag: string): Promise<void> {
  const nc = await natsConnect({ servers: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" });
  const jsm = await nc.jetstreamManager();
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(tag)) await jsm.streams.delete(s.config.name).catch(() => false);
  await nc.close();
  await deleteRedisKeys(tag);
}

async function runStrategy(
  strategy: Strategy,
  rate: number,
  seconds: number,
  usersPerNode: number,
  log: (line: string) => void,
): Promise<Omit<SignallingRow, "cpuRatioToBroadcast">> {
  const tag = `sig${randomBytes(3).toString("hex")}`;
  const env = {
    ROUTING_BUS: "nats",
    ROUTING_SIGNALS: "nats",
    ROUTING_STORE: "redis",
    ROUTING_PRESENCE: "redis",
    ROUTING_TRANSPORTER: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222",
    ROUTING_NAMESPACE: tag,
    ROUTING_NATS_PREFIX: tag,
    ROUTING_REDIS_PREFIX: `${tag}:`,
    ROUTING_DELIVERY_STRATEGY: strategy,
    ROUTING_SHARD_COUNT: "64",
    ROUTING_SEND_RATE_PER_SECOND: "0",
  };
  const nodes = await Promise.all(
    Array.from({ length: NODES }, (_, i) => startService({ ...env, ROUTING_INSTANCE_ID: `${tag}-n${i}` }, undefined, { readyTimeoutMs: 90_000 })),
  );
  const sockets: WebSocket[] = [];
  try {
    const alice = await token(`urn:sm:user:alice-${tag}`);
    const users: Array<{ urn: string; got: Set<string> }> = [];
    const urns = Array.from({ length: usersPerNode * NODES }, (_, i) => `urn:sm:user:u${i}-${tag}`);
    const tokens = await Promise.all(urns.map((urn) => token(urn)));
    const ownerUrl = async (node: RunningService, tok: string): Promise<string | undefined> => {
      const res = await fetch(`${node.url}/route`, { headers: { authorization: `Bearer ${tok}` } });
      return res.status === 200 ? ((await res.json()) as { url: string }).url : undefined;
    };
    if (strategy === "sharded") {
      // Settled: every node names the same owner for every user, and all three own shards.
      await until(
        async () => {
          const views = await Promise.all(nodes.map((n) => Promise.all(tokens.map((t) => ownerUrl(n, t)))));
          return views[0].every((u, i) => u !== undefined && views.every((v) => v[i] === u)) && new Set(views[0]).size === NODES;
        },
        60_000,
        "shards settled",
      );
    }
    for (let i = 0; i < urns.length; i++) {
      const urn = urns[i];
      const tok = tokens[i];
      // `sharded`: the session belongs on the shard's owner (GET /route); a MOVED or 503 in between is followed.
      let url = strategy === "sharded" ? ((await ownerUrl(nodes[0], tok)) ?? nodes[0].url) : nodes[i % NODES].url;
      const got = new Set<string>();
      let ws: WebSocket | undefined;
      for (let attempt = 0; ws === undefined; attempt++) {
        if (attempt > 50) throw new Error(`${urn}: no session after ${attempt} attempts`);
        const candidate = new WebSocket(`${url.replace(/^http/, "ws")}/connect?delivery=push`, { headers: { authorization: `Bearer ${tok}` } });
        // Open and still open 100 ms later (a MOVED close comes right after the open), moved, or retry.
        const outcome = await new Promise<"open" | "retry" | { moved: string }>((resolve) => {
          let timer: NodeJS.Timeout | undefined;
          candidate.once("open", () => (timer = setTimeout(() => resolve("open"), 100)));
          candidate.once("unexpected-response", (_req, res) => {
            res.resume();
            resolve("retry");
          });
          candidate.on("error", () => resolve("retry"));
          candidate.once("close", (code, reason) => {
            clearTimeout(timer);
            resolve(code === 4010 && reason.length > 0 ? { moved: reason.toString() } : "retry");
          });
        });
        if (outcome === "open") ws = candidate;
        else if (typeof outcome === "object") url = outcome.moved;
        else await new Promise((r) => setTimeout(r, 200));
      }
      ws.on("message", (data) => {
        const frame = JSON.parse(data.toString()) as { type: string; message?: { id: string } };
        if (frame.type === "message" && frame.message) got.add(frame.message.id);
      });
      sockets.push(ws);
      users.push({ urn, got });
    }
    // Online everywhere: a first message reaches every user.
    // A keep-alive socket closed under the request is retried with the same messageId (de-duplicated: stored once).
    const send = async (node: RunningService, urn: string, messageId: string): Promise<number> => {
      const body = JSON.stringify({ recipientId: urn, messageId, encryptedData: randomBytes(150).toString("base64") });
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await fetch(`${node.url}/send`, {
            method: "POST",
            headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
            body,
          });
          await res.arrayBuffer();
          return res.status;
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
    };
    await Promise.all(users.map((u, i) => send(nodes[i % NODES], u.urn, "warm")));
    await until(() => users.every((u) => u.got.has("warm")), 30_000, "every user online");
    const before = await Promise.all(nodes.map(scrape));

    const total = Math.round(rate * seconds);
    const started = Date.now();
    let accepted = 0;
    const expected = new Map<number, string[]>();
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const u = i % users.length;
      const id = `m${i}`;
      inflight.push(
        send(nodes[i % NODES], users[u].urn, id).then((status) => {
          if (status !== 202) return;
          accepted++;
          expected.set(u, [...(expected.get(u) ?? []), id]);
        }),
      );
    }
    await Promise.all(inflight);
    await until(() => users.every((u, i) => (expected.get(i) ?? []).every((id) => u.got.has(id))), 60_000, "every accepted message delivered").catch(
      (err: Error) => log(`signalling ${strategy}: ${err.message}`),
    );
    const after = await Promise.all(nodes.map(scrape));
    const delivered = users.reduce((sum, u, i) => sum + (expected.get(i) ?? []).filter((id) => u.got.has(id)).length, 0);
    const perNode = nodes.map((_, i) => ({
      node: `n${i}`,
      received: after[i].received - before[i].received,
      delivered: after[i].delivered - before[i].delivered,
      cpuSeconds: after[i].cpu - before[i].cpu,
    }));
    const received = perNode.reduce((s, n) => s + n.received, 0);
    const signalled = perNode.reduce((s, n) => s + n.delivered, 0);
    const cpuSeconds = perNode.reduce((s, n) => s + n.cpuSeconds, 0);
    const row = {
      strategy,
      offeredPerSecond: rate,
      sent: total,
      accepted,
      delivered,
      perNode,
      noiseRatio: received === 0 ? 0 : signalled / received,
      cpuSeconds,
      cpuMsPerDelivered: delivered === 0 ? 0 : (cpuSeconds * 1000) / delivered,
    };
    log(
      `signalling ${strategy}: ${accepted}/${total} accepted, ${delivered} delivered, received ${perNode.map((n) => n.received).join("/")}, delivered ${perNode.map((n) => n.delivered).join("/")}, noise ratio ${row.noiseRatio.toFixed(2)}, ${row.cpuMsPerDelivered.toFixed(2)} ms CPU per delivered`,
    );
    return row;
  } finally {
    for (const ws of sockets) ws.terminate();
    for (const node of nodes) {
      await node.stop();
      removeDir(node.dataDir);
    }
    await cleanup(tag).catch(() => {});
  }
}

export async function runSignalling(log: (line: string) => void): Promise<SignallingRow[]> {
  const rate = Number(process.env.BENCH_SIGNAL_RATE ?? 300);
  const seconds = Number(process.env.BENCH_SIGNAL_SECONDS ?? 10);
  const usersPerNode = Number(process.env.BENCH_SIGNAL_USERS_PER_NODE ?? 20);
  const strategies = (process.env.BENCH_SIGNAL_STRATEGIES?.split(",").map((s) => s.trim()) ?? ["broadcast", "targeted", "sharded"]) as Strategy[];
  const rows: Array<Omit<SignallingRow, "cpuRatioToBroadcast">> = [];
  for (const strategy of strategies) rows.push(await runStrategy(strategy, rate, seconds, usersPerNode, log));
  const base = rows.find((r) => r.strategy === "broadcast")?.cpuMsPerDelivered;
  return rows.map((r) => ({ ...r, cpuRatioToBroadcast: base ? r.cpuMsPerDelivered / base : Number.NaN }));
}

export function signallingMarkdown(rows: readonly SignallingRow[]): string {
  const head =
    "| strategy | offered | accepted | delivered | signals received per node | signals delivered per node | noise ratio (delivered/received) | node CPU s | CPU ms per delivered | CPU vs broadcast |\n|---|---|---|---|---|---|---|---|---|---|";
  const lines = rows.map(
    (r) =>
      `| ${r.strategy} | ${r.offeredPerSecond}/s x ${r.sent} | ${r.accepted} | ${r.delivered} | ${r.perNode.map((n) => n.received).join(" / ")} | ${r.perNode.map((n) => n.delivered).join(" / ")} | ${r.noiseRatio.toFixed(2)} | ${r.cpuSeconds.toFixed(2)} | ${r.cpuMsPerDelivered.toFixed(2)} | ${r.cpuRatioToBroadcast.toFixed(2)}x |`,
  );
  return [head, ...lines].join("\n");
}
