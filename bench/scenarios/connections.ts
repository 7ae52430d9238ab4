/**
 * Idle WebSocket connections: how fast each contender accepts them and how much server memory
 * each one costs (RSS delta / connections held). Clients are child processes (bench/workers/
 * conn-holder.ts), each within its own open-file limit and on its own source address.
 */
import { fork, type ChildProcess } from "node:child_process";
import type { Contender } from "../contenders.ts";
import { rssBytes } from "../lib/proc.ts";
import { spread, type Spread } from "../lib/stats.ts";
import type { Plan } from "../plan.ts";
import type { HolderAnswer, HolderCommand, HolderSpec } from "../workers/conn-holder.ts";

export interface ConnRow {
  readonly contender: string;
  /** The level asked for (BENCH_CONNECTIONS). */
  readonly requested: number;
  /** What the harness aimed for after the open-file cap. */
  readonly target: number;
  readonly held: Spread;
  /** Connections per second while opening this step. */
  readonly connectRate: Spread;
  readonly rssMiB: Spread;
  readonly rssPerConnKiB: Spread;
  readonly failed: number;
  readonly reopened: number;
  readonly firstError?: string;
}

/** Server fds kept free for its own files, listeners and backends. */
const SERVER_FD_RESERVE = 300;
const SETTLE_MS = 1500;
const WARMUP_CONNECTIONS = 300;

let nextAddress = 0;
/** A fresh loopback source address per holder: 127.0.a.b, never reused within a run. */
function sourceAddress(): string {
  const n = nextAddress++;
  return `127.0.${1 + Math.floor(n / 250)}.${2 + (n % 250)}`;
}

interface Holder {
  readonly proc: ChildProcess;
  held: number;
  call(cmd: HolderCommand): Promise<HolderAnswer>;
}

function holderSpec(contender: Contender, round: number): Omit<HolderSpec, "localAddress"> | undefined {
  const t = contender.target({ ingress: "ws", mode: "push", payloadBytes: 200 });
  const idPrefix = `conn-${contender.name}-r${round}-${Date.now().toString(36)}`;
  if ("unsupported" in t) return undefined;
  if (t.protocol === "frames") return { protocol: "frames", url: t.wsUrl, auth: t.auth, idPrefix, parallel: 64 };
  if (t.protocol === "socketio") return { protocol: "socketio", url: t.url, auth: "jwt", idPrefix, parallel: 64 };
  return undefined;
}

async function spawnHolder(spec: HolderSpec): Promise<Holder> {
  const proc = fork(new URL("../workers/conn-holder.ts", import.meta.url).pathname, [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_HOLDER: JSON.stringify(spec) },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let waiting: ((a: HolderAnswer) => void) | undefined;
  proc.on("message", (a: HolderAnswer) => {
    const w = waiting;
    waiting = undefined;
    w?.(a);
  });
  const next = () => new Promise<HolderAnswer>((resolve) => (waiting = resolve));
  await next();
  return {
    proc,
    held: 0,
    call(cmd) {
      const answer = next();
      proc.send(cmd);
      return answer;
    },
  };
}

async function stopHolders(holders: Holder[]): Promise<void> {
  await Promise.all(holders.map((h) => h.call({ op: "close" }).catch(() => undefined)));
  for (const h of holders) h.proc.kill("SIGKILL");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Step {
  readonly held: number;
  readonly rate: number;
  readonly rss: number;
  readonly perConn: number;
  readonly failed: number;
  readonly reopened: number;
  readonly firstError?: string;
}

/** One ramp through every level for one contender: fresh holders, warm-up, baseline, then steps. */
async function ramp(contender: Contender, levels: readonly number[], plan: Plan, round: number): Promise<Step[] | undefined> {
  const base = holderSpec(contender, round);
  if (!base) return undefined;
  const holders: Holder[] = [];
  const addHolder = async () => {
    const h = await spawnHolder({ ...base, localAddress: sourceAddress() });
    holders.push(h);
    return h;
  };
  try {
    // Warm-up: the server's first connections pay for JIT and table growth; the baseline comes after.
    const warm = await addHolder();
    await warm.call({ op: "open", count: Math.min(WARMUP_CONNECTIONS, levels[0] ?? WARMUP_CONNECTIONS) });
    await warm.call({ op: "close" });
    warm.proc.kill("SIGKILL");
    holders.length = 0;
    await sleep(SETTLE_MS);
    const baseRss = rssBytes(contender.pid);
    const steps: Step[] = [];
    let held = 0;
    for (const level of levels) {
      const started = performance.now();
      const plans: Array<Promise<HolderAnswer & { asked: number }>> = [];
      let need = level - held;
      while (need > 0) {
        const h = holders.find((x) => x.held < plan.connectionsPerHolder) ?? (await addHolder());
        const take = Math.min(need, plan.connectionsPerHolder - h.held);
        h.held += take;
        need -= take;
        plans.push(h.call({ op: "open", count: take }).then((a) => ({ ...a, asked: take })));
      }
      const answers = await Promise.all(plans);
      const seconds = (performance.now() - started) / 1000;
      const opened = answers.reduce((n, a) => n + a.asked - a.failed, 0);
      held += opened;
      await sleep(SETTLE_MS);
      const rss = rssBytes(contender.pid);
      steps.push({
        held,
        rate: opened / seconds,
        rss,
        perConn: held > 0 ? (rss - baseRss) / held : Number.NaN,
        failed: answers.reduce((n, a) => n + a.failed, 0),
        reopened: answers.reduce((n, a) => n + a.reopened, 0),
        firstError: answers.find((a) => a.firstError)?.firstError,
      });
    }
    return steps;
  } finally {
    await stopHolders(holders);
    // Let the server close its side before the next contender measures.
    await sleep(SETTLE_MS);
  }
}

export async function runConnections(plan: Plan, contenders: readonly Contender[], fdLimit: number, log: (line: string) => void) {
  const cap = Math.max(1, fdLimit - SERVER_FD_RESERVE);
  const targets = plan.connections.map((n) => Math.min(n, cap));
  const taking = contenders.filter((c) => holderSpec(c, 0) !== undefined);
  const steps = new Map<string, Step[][]>(taking.map((c) => [c.name, []]));
  for (let r = 0; r < plan.connectionRounds; r++) {
    for (let i = 0; i < taking.length; i++) {
      const contender = taking[(i + r) % taking.length];
      log(`connections: ${contender.name} round ${r + 1} -> ${targets.join(", ")}`);
      const result = await ramp(contender, targets, plan, r);
      if (result) steps.get(contender.name)?.push(result);
    }
  }
  const rows: ConnRow[] = [];
  for (const contender of taking) {
    const rounds = steps.get(contender.name) ?? [];
    plan.connections.forEach((requested, level) => {
      const at = rounds.map((r) => r[level]).filter((s): s is Step => s !== undefined);
      const row: ConnRow = {
        contender: contender.name,
        requested,
        target: targets[level],
        held: spread(at.map((s) => s.held)),
        connectRate: spread(at.map((s) => s.rate)),
        rssMiB: spread(at.map((s) => s.rss / 2 ** 20)),
        rssPerConnKiB: spread(at.map((s) => s.perConn / 1024)),
        failed: at.reduce((n, s) => n + s.failed, 0),
        reopened: at.reduce((n, s) => n + s.reopened, 0),
        firstError: at.find((s) => s.firstError)?.firstError,
      };
      rows.push(row);
      log(
        `  ${contender.name.padEnd(12)} ${String(requested).padStart(6)} (target ${row.target}): held ${Math.round(row.held.median)}  ` +
          `${Math.round(row.connectRate.median)} conn/s  RSS ${row.rssMiB.median.toFixed(0)} MiB  ${row.rssPerConnKiB.median.toFixed(2)} KiB/conn` +
          (row.failed ? `  failed ${row.failed} (${row.firstError})` : "") +
          (row.reopened ? `  reopened ${row.reopened}` : ""),
      );
    });
  }
  return { rows, cap };
}
