/**
 * The group-send scenario (issue 20): a 50-member fan-out, as an end-to-end-encrypted client sends
 * a group message (one envelope sealed per member), two ways in one run against one service:
 * 50 concurrent `POST /send` against one `POST /send/batch` of 50. Every member holds a WebSocket
 * (push delivery); a group counts as done when all 50 members received their envelope. Figures:
 * messages/s (closed loop, BENCH_GROUP_INFLIGHT groups in flight) and p50/p99 of the time until all
 * 50 are delivered, and their ratios batch/single. Rounds alternate the two ways.
 */
import WebSocket from "ws";
import { removeDir, startService, token } from "../../test/helpers/service.ts";
import { summarizeLatency } from "../lib/stats.ts";

export interface GroupRow {
  readonly way: "50 x POST /send" | "1 x POST /send/batch";
  readonly groups: number;
  readonly messagesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface GroupResult {
  readonly members: number;
  readonly inFlight: number;
  readonly seconds: number;
  readonly rows: readonly GroupRow[];
  /** batch / single: messages/s (above 1: batch faster) and p99 (below 1: batch sooner). */
  readonly ratio: { readonly messagesPerSecond: number; readonly p99: number };
}

const MEMBERS = 50;
const env = process.env;

interface Waiting {
  remaining: number;
  readonly started: number;
  readonly done: (ms: number) => void;
}

export async function runGroupSend(log: (line: string) => void): Promise<GroupResult> {
  const seconds = Number(env.BENCH_GROUP_SECONDS ?? 8);
  const rounds = Number(env.BENCH_GROUP_ROUNDS ?? 2);
  const inFlight = Number(env.BENCH_GROUP_INFLIGHT ?? 4);
  const svc = await startService({ ROUTING_SEND_RATE_PER_SECOND: "0" }, undefined, { readyTimeoutMs: 120_000 });
  const run = Math.random().toString(36).slice(2, 8);
  const members = Array.from({ length: MEMBERS }, (_, i) => `urn:sm:user:grp-${run}-${i}`);
  const sender = await token(`grp-${run}-sender`);
  const waiting = new Map<string, Waiting>();
  const sockets: WebSocket[] = [];
  try {
    for (const urn of members) {
      const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/connect?delivery=push`, { headers: { authorization: `Bearer ${await token(urn)}` } });
      await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
      ws.on("message", (data) => {
        const text = String(data);
        // The group id is the messageId's prefix: `g<n>-<member>`.
        const match = /"id":"(g\d+)-\d+"/.exec(text);
        if (match === null) return;
        const w = waiting.get(match[1]);
        if (w !== undefined && --w.remaining === 0) {
          waiting.delete(match[1]);
          w.done(performance.now() - w.started);
        }
      });
      sockets.push(ws);
    }
    const payload = Buffer.alloc(150, 1).toString("base64");
    let seq = 0;
    const headers = { authorization: `Bearer ${sender}`, "content-type": "application/json" };
    const envelopes = (group: string) => members.map((recipientId, i) => ({ recipientId, messageId: `${group}-${i}`, encryptedData: payload }));
    const send = async (way: GroupRow["way"]): Promise<number> => {
      const group = `g${++seq}`;
      const delivered = new Promise<number>((done) => waiting.set(group, { remaining: MEMBERS, started: performance.now(), done }));
      const batch = envelopes(group);
      if (way === "1 x POST /send/batch") {
        const res = await fetch(`${svc.url}/send/batch`, { method: "POST", headers, body: JSON.stringify({ envelopes: batch }) });
        if (res.status !== 200) throw new Error(`batch answered ${res.status}`);
        await res.arrayBuffer();
      } else {
        await Promise.all(
          batch.map(async (e) => {
            const res = await fetch(`${svc.url}/send`, { method: "POST", headers, body: JSON.stringify(e) });
            if (res.status !== 202) throw new Error(`send answered ${res.status}`);
            await res.arrayBuffer();
          }),
        );
      }
      return delivered;
    };
    const measure = async (way: GroupRow["way"], ms: number) => {
      const samples: number[] = [];
      const began = performance.now();
      const loop = async () => {
        while (performance.now() - began < ms) samples.push(await send(way));
      };
      await Promise.all(Array.from({ length: inFlight }, loop));
      return { samples, elapsed: (performance.now() - began) / 1000 };
    };
    const ways: Array<GroupRow["way"]> = ["50 x POST /send", "1 x POST /send/batch"];
    for (const way of ways) await measure(way, 1000); // warm-up
    const all = new Map<GroupRow["way"], { samples: number[]; elapsed: number }>(ways.map((w) => [w, { samples: [], elapsed: 0 }]));
    for (let r = 0; r < rounds; r++) {
      for (const way of r % 2 === 0 ? ways : [...ways].reverse()) {
        const out = await measure(way, seconds * 1000);
        const acc = all.get(way)!;
        acc.samples.push(...out.samples);
        acc.elapsed += out.elapsed;
        log(`group: ${way} round ${r + 1}: ${out.samples.length} groups in ${out.elapsed.toFixed(1)} s`);
      }
    }
    const rows: GroupRow[] = ways.map((way) => {
      const { samples, elapsed } = all.get(way)!;
      const lat = summarizeLatency(Float64Array.from(samples));
      return { way, groups: samples.length, messagesPerSecond: (samples.length * MEMBERS) / elapsed, p50Ms: lat.p50, p99Ms: lat.p99 };
    });
    const [single, batch] = rows;
    return {
      members: MEMBERS,
      inFlight,
      seconds: seconds * rounds,
      rows,
      ratio: { messagesPerSecond: batch.messagesPerSecond / single.messagesPerSecond, p99: batch.p99Ms / single.p99Ms },
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    await svc.stop();
    removeDir(svc.dataDir);
  }
}

export function groupMarkdown(result: GroupResult): string {
  const lines = [
    `50-member fan-out, ${result.inFlight} groups in flight, ${result.seconds} s per way (embedded default, every accepted message fsynced, WebSocket push delivery to 50 members).`,
    "",
    "| way | groups | messages/s | p50 until all 50 delivered | p99 until all 50 delivered |",
    "|---|---|---|---|---|",
    ...result.rows.map((r) => `| ${r.way} | ${r.groups} | ${r.messagesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(1)} ms | ${r.p99Ms.toFixed(1)} ms |`),
    "",
    `Ratio batch / single: ${result.ratio.messagesPerSecond.toFixed(2)}x messages/s, ${result.ratio.p99.toFixed(2)}x p99.`,
  ];
  return lines.join("\n");
}
