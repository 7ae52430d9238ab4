/**
 * `npm run bench`: a first, small benchmark. For each gateway engine it starts the service as its
 * own process (embedded default, push mode), connects receivers over WebSocket and sends over
 * HTTP POST /send with fixed concurrency, measuring routed messages per second and the latency
 * from the send request to the WebSocket delivery. Prints a table and writes bench/results/*.json.
 * Figures are relative: compare engines within one run, not across machines.
 */
import { writeFileSync } from "node:fs";
import { Agent, request } from "undici";
import { connect } from "../test/helpers/clients.ts";
import { removeDir, startService, token } from "../test/helpers/service.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const RECEIVERS = Number(process.env.BENCH_RECEIVERS ?? 50);
const PAYLOAD_BYTES = Number(process.env.BENCH_PAYLOAD_BYTES ?? 200);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runEngine(engine: "uws" | "ws") {
  const svc = await startService({ ROUTING_GATEWAY_ENGINE: engine });
  try {
    const receivers = await Promise.all(
      Array.from({ length: RECEIVERS }, async (_, i) => {
        const urn = `urn:sm:user:bench-r${i}`;
        return { urn, socket: await connect(svc.port, { token: await token(urn), delivery: "push" }) };
      }),
    );
    const senderToken = await token("urn:sm:user:bench-sender");
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    let received = 0;
    let allReceived: () => void = () => {};
    const done = new Promise<void>((resolve) => (allReceived = resolve));
    for (const { socket } of receivers) {
      socket.ws.on("message", (data) => {
        const text = data.toString();
        const match = /"id":"([^"]+)"/.exec(text);
        if (!match || !text.startsWith('{"type":"message"')) return;
        const t0 = sentAt.get(match[1]);
        if (t0 !== undefined) latencies.push(performance.now() - t0);
        if (++received === MESSAGES) allReceived();
      });
    }
    const payload = Buffer.alloc(PAYLOAD_BYTES, 7).toString("base64").slice(0, PAYLOAD_BYTES);
    const dispatcher = new Agent({ connections: CONCURRENCY, pipelining: 1 });
    let next = 0;
    const started = performance.now();
    const worker = async () => {
      while (next < MESSAGES) {
        const i = next++;
        const id = `b-${engine}-${i}`;
        const body = JSON.stringify({ recipientId: receivers[i % RECEIVERS].urn, messageId: id, encryptedData: payload });
        sentAt.set(id, performance.now());
        const res = await request(`${svc.url}/send`, { method: "POST", body, headers: { authorization: `Bearer ${senderToken}`, "content-type": "application/json" }, dispatcher });
        await res.body.dump();
        if (res.statusCode !== 202) throw new Error(`send answered ${res.statusCode}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received}/${MESSAGES} delivered`)), 60_000))]);
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    await Promise.all(receivers.map((r) => r.socket.close()));
    await dispatcher.close();
    return {
      engine,
      messages: MESSAGES,
      msgPerSec: Math.round(MESSAGES / elapsed),
      p50Ms: +percentile(latencies, 50).toFixed(2),
      p99Ms: +percentile(latencies, 99).toFixed(2),
    };
  } finally {
    await svc.stop();
    removeDir(svc.dataDir);
  }
}

const results = [];
for (const engine of ["uws", "ws"] as const) results.push(await runEngine(engine));
const base = results[results.length - 1];
console.log(`HTTP POST /send -> WebSocket push delivery, ${MESSAGES} msgs, ${CONCURRENCY} concurrent senders, ${RECEIVERS} receivers, ${PAYLOAD_BYTES} B payload`);
console.log("| engine | msg/s | vs ws | p50 ms | p99 ms |\n|---|---|---|---|---|");
for (const r of results) console.log(`| ${r.engine} | ${r.msgPerSec} | ${(r.msgPerSec / base.msgPerSec).toFixed(2)}x | ${r.p50Ms} | ${r.p99Ms} |`);
writeFileSync(new URL(`./results/route-${Date.now()}.json`, import.meta.url), JSON.stringify({ at: new Date().toISOString(), messages: MESSAGES, concurrency: CONCURRENCY, results }, null, 2));
