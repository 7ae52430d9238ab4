/**
 * `npm run bench`: the service against its alternatives, side by side in one run.
 *
 * Scenarios (bench/plan.ts decides which, how long, how many rounds):
 * - route: sender/receiver pairs over WebSocket through each contender; WebSocket `send` frames
 *   or POST /send; push or poke-then-pull; 200 B and 8 KiB payloads; throughput at saturation
 *   (closed loop) and latency at fixed offered rates (open loop);
 * - connections: idle WebSocket connections held (10k, then 50k or as many as the open-file limit
 *   allows); connect rate and server RSS per connection;
 * - mqtt: MQTT publisher -> subscriber through the service (embedded broker) and through Mosquitto.
 * - overload: 10x the service's measured saturation for 60 s, embedded and NATS + Redis: RSS peak,
 *   refused share, p99 of accepted sends, and nothing accepted lost (scenarios/overload.ts).
 * - group: a 50-member fan-out as 50 POST /send against one POST /send/batch (scenarios/group-send.ts);
 *   sse: push delivery to SSE streams beside WebSockets (scenarios/sse-delivery.ts). Only these:
 *   BENCH_SCENARIOS=group,sse.
 * - signalling: three nodes, the same offered load for `broadcast`, `targeted` and `sharded`:
 *   signals received and delivered per node, noise ratio, CPU per delivered (scenarios/signalling.ts;
 *   BENCH_SCENARIOS=signalling runs it alone).
 *
 * The load runs in worker threads (route, mqtt) and child processes (connections), never in the
 * servers' processes; every contender is its own process. The machine is shared (2 cores here):
 * every row reports the CPU the contender and the generator used, and rounds alternate between
 * contenders so noise lands on all of them. Results: a table on stdout, results/latest.{json,md,svg}
 * and a timestamped JSON. BENCH_QUICK=1 for a fast look, BENCH_SMOKE=1 for the test's smoke run.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { startContender, type Contender, type ContenderName } from "./contenders.ts";
import { startWorkers } from "./lib/pool.ts";
import { freeH, machineInfo, raiseNofile } from "./lib/proc.ts";
import { loadPlan, type ScenarioName } from "./plan.ts";
import { chartSvg } from "./report/chart.ts";
import { markdown, targetLines } from "./report/markdown.ts";
import type { Results } from "./report/results.ts";
import { ratiosOf, targetsOf } from "./report/targets.ts";
import { runConnections, type ConnRow } from "./scenarios/connections.ts";
import { runMatrix, type Row, type Skip } from "./scenarios/matrix.ts";
import { overloadMarkdown, runOverload, type OverloadRow } from "./scenarios/overload.ts";
import { groupMarkdown, runGroupSend } from "./scenarios/group-send.ts";
import { runSseDelivery, sseMarkdown } from "./scenarios/sse-delivery.ts";
import { runSignalling, signallingMarkdown } from "./scenarios/signalling.ts";

const plan = loadPlan();
// The machine is shared: the load average before and after says how much else was running.
const loadBefore = loadavg();
const began = performance.now();
const log = (line: string) => console.log(`[${((performance.now() - began) / 1000).toFixed(0).padStart(4)} s] ${line}`);
// Children inherit it: the servers and the connection holders are spawned after this.
const fdLimit = raiseNofile(Math.max(...plan.connections) + 2_000);
const running = new Set<Contender>();

/** Starts contenders in parallel; one that cannot start (no Redis, no Mosquitto) is skipped and said why. */
async function start(names: readonly ContenderName[], skipped: Skip[], variant: string): Promise<Contender[]> {
  const started = await Promise.all(
    names.map((name) =>
      startContender(name).then(
        (c) => {
          running.add(c);
          return c;
        },
        (err: unknown) => {
          skipped.push({ contender: name, variant, why: `did not start: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}` });
          return undefined;
        },
      ),
    ),
  );
  return started.filter((c): c is Contender => c !== undefined);
}

async function stop(contenders: readonly Contender[]): Promise<void> {
  await Promise.all(contenders.map((c) => c.stop().catch(() => undefined)));
  for (const c of contenders) running.delete(c);
}

process.once("SIGINT", () => {
  void stop([...running]).finally(() => process.exit(130));
});

/** Mosquitto and bare aedes speak MQTT only. */
const socketContenders = plan.contenders.filter((c) => c !== "mosquitto" && c !== "aedes");
let route: { rows: Row[]; skipped: Skip[] } = { rows: [], skipped: [] };
let mqtt: { rows: Row[]; skipped: Skip[] } = { rows: [], skipped: [] };
let connections: { rows: ConnRow[]; cap: number } = { rows: [], cap: 0 };
let overload: OverloadRow[] = [];

/** A scenario's own table: results/<name>-latest.md, and on stdout. */
function extra(name: string, table: string): void {
  mkdirSync(plan.outDir, { recursive: true });
  writeFileSync(join(plan.outDir, `${name}-latest.md`), `${table}\n`);
  console.log(`\n## ${name}\n\n${table}\n`);
}

log(
  `plan ${plan.profile}: ${[...plan.scenarios].join(", ")}; contenders ${plan.contenders.join(", ")}; open-file limit ${fdLimit.soft}${fdLimit.note ? ` (${fdLimit.note})` : ""}`,
);
const pool = startWorkers(plan.workers);
try {
  if (plan.scenarios.has("route")) {
    const skipped: Skip[] = [];
    const contenders = await start(socketContenders, skipped, "all");
    try {
      const out = await runMatrix(plan, plan.route, contenders, plan.pairs, pool, log);
      route = { rows: out.rows, skipped: [...skipped, ...out.skipped] };
    } finally {
      await stop(contenders);
    }
  }
  if (plan.scenarios.has("connections")) {
    const contenders = await start(socketContenders, [], "connections");
    try {
      connections = await runConnections(plan, contenders, fdLimit.soft, log);
    } finally {
      await stop(contenders);
    }
  }
  if (plan.scenarios.has("mqtt")) {
    const skipped: Skip[] = [];
    const names = (["mosquitto", "aedes", "service-uws", "baseline-uws"] as const).filter((n) => plan.contenders.includes(n) || n === "mosquitto");
    const contenders = await start(names, skipped, "mqtt/push/200B");
    try {
      const out = await runMatrix(plan, plan.mqtt, contenders, plan.mqttPairs, pool, log);
      mqtt = { rows: out.rows, skipped: [...skipped, ...out.skipped] };
    } finally {
      await stop(contenders);
    }
  }
  if (plan.scenarios.has("overload")) overload = await runOverload(log);
  // issue 20: written and printed as soon as each is measured.
  if (plan.scenarios.has("group")) extra("group", groupMarkdown(await runGroupSend(log)));
  if (plan.scenarios.has("sse")) extra("sse", sseMarkdown(await runSseDelivery(log)));
  if (plan.scenarios.has("signalling")) extra("signalling", signallingMarkdown(await runSignalling(log)));
} finally {
  await pool.close();
  await stop([...running]);
}

const results: Results = {
  at: new Date().toISOString(),
  seconds: (performance.now() - began) / 1000,
  machine: { ...machineInfo(), free: freeH(), load: { before: loadBefore, after: loadavg() } },
  plan,
  fdLimit,
  route,
  mqtt,
  connections,
  ratios: ratiosOf(route.rows, mqtt.rows),
  targets: targetsOf(route.rows, connections.rows, mqtt.rows),
};
// Only a run that measured the main tables replaces them (BENCH_SCENARIOS=group,sse leaves them as they are).
const measuredMain = ["route", "connections", "mqtt"].some((name) => plan.scenarios.has(name as ScenarioName));
if (measuredMain) {
  const md = markdown(results);
  mkdirSync(plan.outDir, { recursive: true });
  writeFileSync(join(plan.outDir, `bench-${results.at.replace(/[:.]/g, "-")}.json`), JSON.stringify(results, null, 2));
  writeFileSync(join(plan.outDir, "latest.json"), JSON.stringify(results, null, 2));
  writeFileSync(join(plan.outDir, "latest.md"), md);
  writeFileSync(join(plan.outDir, "latest.svg"), chartSvg(results));
  console.log(`\n${md}`);
}
if (overload.length > 0) {
  const table = overloadMarkdown(overload);
  writeFileSync(join(plan.outDir, "overload-latest.json"), JSON.stringify({ at: results.at, machine: results.machine, rows: overload }, null, 2));
  writeFileSync(join(plan.outDir, "overload-latest.md"), `${table}\n`);
  console.log(`\n## Overload\n\n${table}`);
}
console.log(`\n## Targets (issue 16; each against its baseline in this run)\n\n${targetLines(results.targets).join("\n")}`);
log(`done; results in ${plan.outDir} (latest.json, latest.md, latest.svg)`);
