/**
 * Runs variants x loads x rounds over a set of contenders, alternating contenders within each
 * round (and rotating who goes first), so noise from the shared machine lands on all of them.
 * Used by the route and MQTT scenarios.
 */
import { token } from "../../test/helpers/service.ts";
import { RUN_ID, type Contender } from "../contenders.ts";
import type { WorkerPool } from "../lib/pool.ts";
import { cpuMeter } from "../lib/proc.ts";
import { concatSamples, spread, summarizeLatency, type Spread } from "../lib/stats.ts";
import { loadName, variantName, type Plan, type VariantPlan } from "../plan.ts";
import type { Load, PairSpec, RunResult, TargetSpec } from "../workers/messages.ts";

export interface Row {
  readonly variant: string;
  readonly load: string;
  readonly contender: string;
  /** Messages delivered per second inside the window. */
  readonly throughput: Spread;
  readonly p50: Spread;
  readonly p99: Spread;
  readonly p999: Spread;
  readonly serverCpuPct: Spread;
  readonly generatorCpuPct: Spread;
  /** Server CPU time per delivered message: robust to the machine being shared, unlike wall-clock figures. */
  readonly serverUsPerMsg: Spread;
  readonly sent: number;
  readonly errors: number;
  readonly lost: number;
  /** Client sockets closed by the server right after their handshake, reopened before measuring. */
  readonly reopened: number;
  /** A fixed rate the contender did not keep up with (median delivered < 90% of offered). */
  readonly saturated: boolean;
}

export interface Skip {
  readonly variant: string;
  readonly contender: string;
  readonly why: string;
}

interface Round {
  readonly throughput: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly serverCpuPct: number;
  readonly generatorCpuPct: number;
  readonly serverUsPerMsg: number;
  readonly sent: number;
  readonly errors: number;
  readonly lost: number;
}

type Log = (line: string) => void;

async function pairsFor(contender: Contender, variantIndex: number, count: number): Promise<PairSpec[]> {
  const party = async (urn: string) => ({ urn, token: contender.needsTokens ? await token(urn) : "" });
  return Promise.all(
    Array.from({ length: count }, async (_, p) => {
      const base = `urn:sm:user:${RUN_ID}-${contender.name}-v${variantIndex}-p${p}`;
      return { sender: await party(`${base}-s`), receiver: await party(`${base}-r`) };
    }),
  );
}

async function measure(pool: WorkerPool, key: string, contender: Contender, load: Load, plan: Plan, durationMs: number): Promise<Round> {
  const perWorker: Load = load.kind === "rate" ? { kind: "rate", perSecond: load.perSecond / pool.size } : load;
  const meter = cpuMeter(contender.cpuPids);
  const results = await pool.all<RunResult>(() => ({ op: "run", key, load: perWorker, durationMs, rampMs: plan.rampMs, drainMs: plan.drainMs }));
  const cpu = meter();
  const windowMs = results[0].windowMs;
  const latency = summarizeLatency(concatSamples(results.map((r) => r.samples)));
  const sum = (f: (r: RunResult) => number) => results.reduce((n, r) => n + f(r), 0);
  // Let the contender finish what the run left (acks, commits) before the next one measures.
  await new Promise((r) => setTimeout(r, 150));
  return {
    throughput: (sum((r) => r.receivedInWindow) * 1000) / windowMs,
    p50: latency.p50,
    p99: latency.p99,
    p999: latency.p999,
    serverCpuPct: cpu.serverPct,
    generatorCpuPct: cpu.generatorPct,
    serverUsPerMsg:
      (cpu.serverPct * cpu.wallSeconds * 1e4) /
      Math.max(
        1,
        sum((r) => r.received),
      ),
    sent: sum((r) => r.sent),
    errors: sum((r) => r.errors),
    lost: sum((r) => r.lost),
  };
}

export async function runMatrix(plan: Plan, variants: readonly VariantPlan[], contenders: readonly Contender[], pairCount: number, pool: WorkerPool, log: Log) {
  const rows: Row[] = [];
  const skipped: Skip[] = [];
  for (const [vi, { variant, loads }] of variants.entries()) {
    const vname = variantName(variant);
    const open: Array<{ contender: Contender; key: string; reopened: number }> = [];
    for (const contender of contenders) {
      const target = contender.target(variant);
      if ("unsupported" in target) {
        skipped.push({ variant: vname, contender: contender.name, why: target.unsupported });
        continue;
      }
      const key = `${contender.name}:${vi}`;
      const pairs = await pairsFor(contender, vi, pairCount);
      let reopened: number;
      try {
        const counts = await pool.all<number>(
          (w): { op: "open"; key: string; target: TargetSpec; variant: typeof variant; pairs: PairSpec[]; httpConnections: number } => ({
            op: "open",
            key,
            target,
            variant,
            pairs: pairs.filter((_, p) => p % pool.size === w),
            httpConnections: plan.httpConnections,
          }),
        );
        reopened = counts.reduce((a, b) => a + b, 0);
      } catch (err) {
        skipped.push({
          variant: vname,
          contender: contender.name,
          why: `could not connect: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`,
        });
        await pool.all(() => ({ op: "close", key })).catch(() => {});
        continue;
      }
      open.push({ contender, key, reopened });
    }
    log(`${vname}: ${open.map((o) => o.contender.name).join(", ")} (warm-up)`);
    for (const { contender, key } of open) await measure(pool, key, contender, { kind: "saturate", window: plan.window }, plan, plan.warmupMs);
    for (const load of loads) {
      const rounds = new Map<string, Round[]>(open.map((o) => [o.contender.name, []]));
      for (let r = 0; r < plan.rounds; r++) {
        for (let i = 0; i < open.length; i++) {
          const { contender, key } = open[(i + r) % open.length];
          const round = await measure(pool, key, contender, load, plan, plan.roundMs);
          rounds.get(contender.name)?.push(round);
        }
      }
      for (const { contender, reopened } of open) {
        const rs = rounds.get(contender.name) ?? [];
        const throughput = spread(rs.map((x) => x.throughput));
        const row: Row = {
          variant: vname,
          load: loadName(load),
          contender: contender.name,
          throughput,
          p50: spread(rs.map((x) => x.p50)),
          p99: spread(rs.map((x) => x.p99)),
          p999: spread(rs.map((x) => x.p999)),
          serverCpuPct: spread(rs.map((x) => x.serverCpuPct)),
          generatorCpuPct: spread(rs.map((x) => x.generatorCpuPct)),
          serverUsPerMsg: spread(rs.map((x) => x.serverUsPerMsg)),
          sent: rs.reduce((n, x) => n + x.sent, 0),
          errors: rs.reduce((n, x) => n + x.errors, 0),
          lost: rs.reduce((n, x) => n + x.lost, 0),
          reopened,
          saturated: load.kind === "rate" && throughput.median < 0.9 * load.perSecond,
        };
        rows.push(row);
        log(
          `  ${vname} ${row.load.padEnd(6)} ${contender.name.padEnd(12)} ${Math.round(row.throughput.median).toString().padStart(7)} msg/s  ` +
            `p50 ${row.p50.median.toFixed(2)} p99 ${row.p99.median.toFixed(2)} p99.9 ${row.p999.median.toFixed(2)} ms  ` +
            `cpu srv ${Math.round(row.serverCpuPct.median)}% gen ${Math.round(row.generatorCpuPct.median)}% srv ${Math.round(row.serverUsPerMsg.median)} µs/msg` +
            (row.errors || row.lost ? `  errors ${row.errors} lost ${row.lost}` : "") +
            (row.reopened ? `  reopened ${row.reopened}` : ""),
        );
      }
    }
    for (const { key } of open) await pool.all(() => ({ op: "close", key }));
  }
  return { rows, skipped };
}
