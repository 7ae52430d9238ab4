/**
 * The overload scenario (issue 14): per backend set-up, measure the service's saturation (closed
 * loop of WebSocket sends), then offer 10x that for BENCH_OVERLOAD_SECONDS (default 60) over
 * WebSocket, HTTP and MQTT together, sampling the server's RSS. Afterwards every id that was
 * answered `sent`, 202 or PUBACK is looked up in the mailboxes: the figure `lost` must be 0.
 *
 * The per-identity send rate is switched off here (ROUTING_SEND_RATE_PER_SECOND=0) so that what
 * holds the load is the ingress bound (ROUTING_INGRESS_MAX_PENDING, default) and nothing else;
 * the rate limit has its own tests.
 */
import { deleteRedisKeys } from "../lib/redis-cleanup.ts";
import { randomBytes } from "node:crypto";
import { connect as natsConnect } from "nats";
import { removeDir, startService, token } from "../../test/helpers/service.ts";
import { collectMailboxes, offer, openSenders, type LoadTarget } from "../lib/overload-load.ts";
import { rssBytes } from "../lib/proc.ts";
import { summarizeLatency } from "../lib/stats.ts";

export const RSS_BOUND_BYTES = 512 * 1024 * 1024;

export interface OverloadRow {
  readonly setup: string;
  readonly saturationPerSecond: number;
  readonly targetPerSecond: number;
  readonly offeredPerSecond: number;
  readonly seconds: number;
  readonly offered: { ws: number; http: number; mqtt: number };
  readonly notOffered: number;
  readonly accepted: number;
  readonly refused: Record<string, number>;
  readonly refusedShare: number;
  readonly p50AcceptedMs: number;
  readonly p99AcceptedMs: number;
  /** p99 of accepted sends per path (WebSocket frames wait in their connection behind the ones sent before them). */
  readonly p99ByPathMs: { readonly ws: number; readonly http: number; readonly mqtt: number };
  readonly rssPeakBytes: number;
  readonly rssBoundBytes: number;
  readonly lost: number;
  readonly unanswered: number;
}

interface Setup {
  readonly name: string;
  readonly env: Record<string, string>;
  cleanup(): Promise<void>;
}

function setups(): Setup[] {
  const tag = `ovl${randomBytes(3).toString("hex")}`;
  return [
    { name: "embedded (SQLite)", env: {}, cleanup: async () => {} },
    {
      name: "NATS JetStream + Redis",
      env: { ROUTING_BUS: "nats", ROUTING_STORE: "redis", ROUTING_PRESENCE: "redis", ROUTING_NATS_PREFIX: tag, ROUTING_REDIS_PREFIX: `${tag}:` },
      async cleanup() {
        const nc = await natsConnect({ servers: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" });
        const jsm = await nc.jetstreamManager();
        for (const s of [`${tag}_INGRESS`, `${tag}_INGRESS_DEAD`]) await jsm.streams.delete(s).catch(() => false);
        await nc.close();
        await deleteRedisKeys(tag);
      },
    },
  ];
}

export async function runOverload(log: (line: string) => void): Promise<OverloadRow[]> {
  const seconds = Number(process.env.BENCH_OVERLOAD_SECONDS ?? 60);
  const factor = Number(process.env.BENCH_OVERLOAD_FACTOR ?? 10);
  const only = process.env.BENCH_OVERLOAD_SETUPS?.split(",").map((s) => s.trim());
  const rows: OverloadRow[] = [];
  for (const setup of setups()) {
    if (only && !only.some((o) => setup.name.toLowerCase().startsWith(o.toLowerCase()))) continue;
    const svc = await startService({ ROUTING_GATEWAY_ENGINE: "uws", ROUTING_SEND_RATE_PER_SECOND: "0", ...setup.env });
    const pid = svc.proc.pid ?? 0;
    try {
      const mqttPort = /routing ready:.*\bmqtt=(\d+)/.exec(svc.output())?.[1];
      const target: LoadTarget = { httpUrl: svc.url, wsUrl: `ws://127.0.0.1:${svc.port}`, mqttUrl: mqttPort ? `mqtt://127.0.0.1:${mqttPort}` : undefined };
      const run = randomBytes(3).toString("hex");
      const recipientNames = Array.from({ length: 128 }, (_, i) => `ovl-${run}-r${i}`);
      const senderTokens = await Promise.all(Array.from({ length: 64 }, (_, i) => token(`ovl-${run}-s${i}`)));
      const mqttTokens = await Promise.all(Array.from({ length: 8 }, (_, i) => token(`ovl-${run}-m${i}`)));
      const senders = await openSenders(
        target,
        senderTokens,
        mqttTokens,
        recipientNames.map((n) => `urn:sm:user:${n}`),
      );

      const sat = await offer(senders, target, { perSecond: Infinity, window: 16, durationMs: 5_000, tag: `${run}.sat` });
      const saturation = sat.accepted.length / (sat.ms / 1000);
      const targetRate = Math.round(saturation * factor);
      log(`overload ${setup.name}: saturation ${Math.round(saturation)}/s (WebSocket sends, closed loop); offering ${targetRate}/s for ${seconds} s`);

      let peak = rssBytes(pid);
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 100);
      const result = await offer(senders, target, { perSecond: targetRate, durationMs: seconds * 1000, httpShare: 0.05, mqttShare: 0.05, tag: `${run}.ovl` });
      clearInterval(sampler);
      peak = Math.max(peak, rssBytes(pid));
      await senders.close();

      const expected = new Set([...sat.accepted, ...result.accepted]);
      const recipientTokens = await Promise.all(recipientNames.map((n) => token(n)));
      const found = await collectMailboxes(svc.url, recipientTokens, expected);
      let lost = 0;
      for (const id of expected) if (!found.has(id)) lost++;
      const offeredTotal = result.offered.ws + result.offered.http + result.offered.mqtt;
      const refusedTotal = Object.values(result.refused).reduce((a, b) => a + b, 0);
      const lat = summarizeLatency(result.latencies);
      const row: OverloadRow = {
        setup: setup.name,
        saturationPerSecond: Math.round(saturation),
        targetPerSecond: targetRate,
        offeredPerSecond: Math.round(offeredTotal / (result.ms / 1000)),
        seconds,
        offered: result.offered,
        notOffered: result.notOffered,
        accepted: result.accepted.length,
        refused: result.refused,
        refusedShare: offeredTotal === 0 ? 0 : refusedTotal / offeredTotal,
        p50AcceptedMs: lat.p50,
        p99AcceptedMs: lat.p99,
        p99ByPathMs: {
          ws: summarizeLatency(result.latenciesByPath.ws).p99,
          http: summarizeLatency(result.latenciesByPath.http).p99,
          mqtt: summarizeLatency(result.latenciesByPath.mqtt).p99,
        },
        rssPeakBytes: peak,
        rssBoundBytes: RSS_BOUND_BYTES,
        lost,
        unanswered: result.unanswered,
      };
      rows.push(row);
      log(`overload ${setup.name}: ${JSON.stringify(row)}`);
    } finally {
      await svc.stop();
      removeDir(svc.dataDir);
      await setup.cleanup().catch((err: unknown) => log(`cleanup failed: ${String(err)}`));
    }
  }
  return rows;
}

export function overloadMarkdown(rows: readonly OverloadRow[]): string {
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
  const lines = [
    "| setup | saturation | offered (target 10x) | accepted | refused share (by code) | p50 / p99 accepted (p99 ws, http, mqtt) | server RSS peak (bound) | lost |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.setup} | ${r.saturationPerSecond}/s | ${r.offeredPerSecond}/s (${r.targetPerSecond}/s) for ${r.seconds} s: ws ${r.offered.ws}, http ${r.offered.http}, mqtt ${r.offered.mqtt}; not offered (generator-side caps) ${r.notOffered} | ${r.accepted} | ${(r.refusedShare * 100).toFixed(1)} % (${Object.entries(
          r.refused,
        )
          .map(([c, n]) => `${c} ${n}`)
          .join(
            ", ",
          )}) | ${r.p50AcceptedMs.toFixed(0)} / ${r.p99AcceptedMs.toFixed(0)} ms (${r.p99ByPathMs.ws.toFixed(0)}, ${r.p99ByPathMs.http.toFixed(0)}, ${r.p99ByPathMs.mqtt.toFixed(0)}) | ${mib(r.rssPeakBytes)} (${mib(r.rssBoundBytes)}) ${r.rssPeakBytes <= r.rssBoundBytes ? "within" : "OVER"} | ${r.lost} |`,
    ),
  ];
  return lines.join("\n");
}
