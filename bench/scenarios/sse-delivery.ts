/**
 * SSE delivery beside WebSocket (issue 20): the same service, the same sender (one WebSocket
 * sending `send` frames, closed loop with BENCH_SSE_WINDOW messages in flight), delivering in push
 * mode to BENCH_SSE_RECEIVERS receivers held either as WebSockets or as `GET /events` streams (read
 * with fetch). Figures: messages/s delivered and p50/p99 from the `send` frame to the receiver.
 */
import WebSocket from "ws";
import { createEventParser } from "../../client/src/sse-transport.ts";
import { removeDir, startService, token } from "../../test/helpers/service.ts";
import { summarizeLatency } from "../lib/stats.ts";

export interface SseRow {
  readonly receivers: "WebSocket" | "SSE (GET /events)";
  readonly delivered: number;
  readonly messagesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const env = process.env;

export async function runSseDelivery(log: (line: string) => void): Promise<{ rows: SseRow[]; receivers: number; window: number; seconds: number }> {
  const seconds = Number(env.BENCH_SSE_SECONDS ?? 8);
  const rounds = Number(env.BENCH_SSE_ROUNDS ?? 2);
  const count = Number(env.BENCH_SSE_RECEIVERS ?? 32);
  const window = Number(env.BENCH_SSE_WINDOW ?? 64);
  const svc = await startService({ ROUTING_SEND_RATE_PER_SECOND: "0", ROUTING_MAX_CONNECTIONS_PER_IDENTITY: "0" }, undefined, { readyTimeoutMs: 120_000 });
  const run = Math.random().toString(36).slice(2, 8);
  const sentAt = new Map<string, number>();
  let onDelivered: (id: string) => void = () => {};
  const received = (text: string) => {
    const match = /"id":"(s\d+)"/.exec(text);
    if (match !== null) onDelivered(match[1]);
  };
  const closers: Array<() => void> = [];
  try {
    const sender = new WebSocket(`ws://127.0.0.1:${svc.port}/connect`, { headers: { authorization: `Bearer ${await token(`sse-${run}-sender`)}` } });
    await new Promise((resolve, reject) => (sender.once("open", resolve), sender.once("error", reject)));
    closers.push(() => sender.terminate());
    const payload = Buffer.alloc(150, 1).toString("base64");
    let seq = 0;
    const open = async (kind: SseRow["receivers"], tag: string): Promise<string[]> => {
      const urns = Array.from({ length: count }, (_, i) => `urn:sm:user:sse-${run}-${tag}-${i}`);
      for (const urn of urns) {
        const jwt = await token(urn);
        if (kind === "WebSocket") {
          const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/connect?delivery=push`, { headers: { authorization: `Bearer ${jwt}` } });
          await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
          ws.on("message", (d) => received(String(d)));
          closers.push(() => ws.terminate());
        } else {
          const abort = new AbortController();
          const res = await fetch(`${svc.url}/events?delivery=push`, { headers: { authorization: `Bearer ${jwt}` }, signal: abort.signal });
          if (res.status !== 200 || res.body === null) throw new Error(`/events answered ${res.status}`);
          const parse = createEventParser((event, data) => event === "message" && received(data));
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          void (async () => {
            try {
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                parse(value);
              }
            } catch {
              // aborted at the end
            }
          })();
          closers.push(() => abort.abort());
        }
      }
      return urns;
    };
    const measure = async (urns: string[], ms: number) => {
      const samples: number[] = [];
      let inFlight = 0;
      const began = performance.now();
      await new Promise<void>((finish) => {
        const pump = () => {
          while (inFlight < window && performance.now() - began < ms) {
            const id = `s${++seq}`;
            inFlight++;
            sentAt.set(id, performance.now());
            sender.send(JSON.stringify({ type: "send", ref: id, envelope: { recipientId: urns[seq % urns.length], messageId: id, encryptedData: payload } }));
          }
          if (inFlight === 0) finish();
        };
        onDelivered = (id) => {
          const at = sentAt.get(id);
          if (at === undefined) return;
          sentAt.delete(id);
          samples.push(performance.now() - at);
          inFlight--;
          pump();
        };
        pump();
      });
      return { samples, elapsed: (performance.now() - began) / 1000 };
    };
    const kinds: Array<SseRow["receivers"]> = ["WebSocket", "SSE (GET /events)"];
    const groups = new Map<SseRow["receivers"], string[]>();
    for (const kind of kinds) groups.set(kind, await open(kind, kind === "WebSocket" ? "ws" : "sse"));
    for (const kind of kinds) await measure(groups.get(kind)!, 1000); // warm-up
    const all = new Map(kinds.map((k) => [k, { samples: [] as number[], elapsed: 0 }]));
    for (let r = 0; r < rounds; r++) {
      for (const kind of r % 2 === 0 ? kinds : [...kinds].reverse()) {
        const out = await measure(groups.get(kind)!, seconds * 1000);
        const acc = all.get(kind)!;
        acc.samples.push(...out.samples);
        acc.elapsed += out.elapsed;
        log(`sse: ${kind} round ${r + 1}: ${out.samples.length} delivered in ${out.elapsed.toFixed(1)} s`);
      }
    }
    const rows = kinds.map((kind): SseRow => {
      const { samples, elapsed } = all.get(kind)!;
      const lat = summarizeLatency(Float64Array.from(samples));
      return { receivers: kind, delivered: samples.length, messagesPerSecond: samples.length / elapsed, p50Ms: lat.p50, p99Ms: lat.p99 };
    });
    return { rows, receivers: count, window, seconds: seconds * rounds };
  } finally {
    for (const close of closers) close();
    await svc.stop();
    removeDir(svc.dataDir);
  }
}

export function sseMarkdown(out: { rows: SseRow[]; receivers: number; window: number; seconds: number }): string {
  return [
    `Push delivery to ${out.receivers} receivers, one WebSocket sender, ${out.window} messages in flight, ${out.seconds} s per transport (embedded default, 200 B envelopes).`,
    "",
    "| receivers | delivered | messages/s | p50 send to receipt | p99 send to receipt |",
    "|---|---|---|---|---|",
    ...out.rows.map((r) => `| ${r.receivers} | ${r.delivered} | ${r.messagesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(1)} ms | ${r.p99Ms.toFixed(1)} ms |`),
  ].join("\n");
}
