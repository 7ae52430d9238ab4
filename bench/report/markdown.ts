/** The run as Markdown: printed at the end of `npm run bench`, written to results/latest.md, pasted into bench/results/README.md. */
import type { ConnRow } from "../scenarios/connections.ts";
import type { Row, Skip } from "../scenarios/matrix.ts";
import { fmt, fmtMs, fmtSpread } from "./format.ts";
import type { Results } from "./results.ts";

function routeTable(rows: readonly Row[]): string {
  const head = "| variant | load | contender | delivered msg/s | p50 ms | p99 ms | p99.9 ms | server CPU % | server µs/msg | generator CPU % | errors / lost |";
  const lines = rows.map(
    (r) =>
      `| ${r.variant} | ${r.load} | ${r.contender} | ${fmtSpread(r.throughput)}${r.saturated ? " (saturated)" : ""} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.p999)} | ` +
      `${fmt(r.serverCpuPct.median)} | ${fmt(r.serverUsPerMsg.median)} | ${fmt(r.generatorCpuPct.median)} | ${r.errors} / ${r.lost} |`,
  );
  return [head, "|---|---|---|---|---|---|---|---|---|---|---|", ...lines].join("\n");
}

function connTable(rows: readonly ConnRow[]): string {
  const head = "| contender | asked | held | connect rate conn/s | server RSS MiB | RSS per connection KiB | notes |";
  const lines = rows.map((r) => {
    const notes = [
      r.target < r.requested ? `capped at ${fmt(r.target)} (open-file limit)` : "",
      r.failed ? `${r.failed} failed: ${r.firstError ?? ""}` : "",
      r.reopened ? `${r.reopened} closed after the handshake, reopened` : "",
    ]
      .filter(Boolean)
      .join("; ");
    return `| ${r.contender} | ${fmt(r.requested)} | ${fmtSpread(r.held)} | ${fmtSpread(r.connectRate)} | ${fmtSpread(r.rssMiB)} | ${fmtSpread(r.rssPerConnKiB, 2)} | ${notes} |`;
  });
  return [head, "|---|---|---|---|---|---|---|", ...lines].join("\n");
}

/** baseline-uws (BENCH_BASELINE_ROOT) beside service-uws, row by row: before and after in one run. */
function beforeAfter(r: Results): string[] {
  const rows = [...r.route.rows, ...r.mqtt.rows];
  const lines = rows
    .filter((x) => x.contender === "baseline-uws")
    .flatMap((before) => {
      const after = rows.find((x) => x.contender === "service-uws" && x.variant === before.variant && x.load === before.load);
      if (!after) return [];
      const cell = (b: number, a: number, digits = 0) => `${fmt(b, digits)} -> ${fmt(a, digits)}`;
      return [
        `| ${before.variant} | ${before.load} | ${cell(before.throughput.median, after.throughput.median)}${after.saturated ? " (saturated)" : ""} | ` +
          `${cell(before.p50.median, after.p50.median, 2)} | ${cell(before.p99.median, after.p99.median, 2)} | ${cell(before.serverUsPerMsg.median, after.serverUsPerMsg.median)} |`,
      ];
    });
  const conns = r.connections.rows
    .filter((x) => x.contender === "baseline-uws")
    .flatMap((before) => {
      const after = r.connections.rows.find((x) => x.contender === "service-uws" && x.requested === before.requested);
      return after
        ? [
            `| idle connections | ${fmt(after.held.median)} held | | | | RSS ${fmt(before.rssPerConnKiB.median, 2)} -> ${fmt(after.rssPerConnKiB.median, 2)} KiB/conn |`,
          ]
        : [];
    });
  if (lines.length + conns.length === 0) return [];
  return [
    "**Before -> after** (baseline-uws, the checkout in `BENCH_BASELINE_ROOT`, -> service-uws, this checkout; same run, rounds alternating)",
    "",
    "| variant | load | delivered msg/s | p50 ms | p99 ms | server µs/msg |",
    "|---|---|---|---|---|---|",
    ...lines,
    ...conns,
    "",
  ];
}

function skips(skipped: readonly Skip[]): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const s of skipped) {
    const line = `- ${s.contender}, ${s.variant}: ${s.why}`;
    if (!seen.has(line)) lines.push(line);
    seen.add(line);
  }
  return lines.join("\n");
}

/** One line per target: whether it holds and the figures, the service's next to its baseline's. */
export function targetLines(targets: Results["targets"]): string[] {
  const verdict = (t: Results["targets"][number]) =>
    t.holds === undefined
      ? t.measured.startsWith("not measured")
        ? "not measured"
        : "not reachable here (the bound measured)"
      : t.holds
        ? "holds"
        : "does not hold";
  return targets.map((t) => `- ${verdict(t)}: ${t.name}: ${t.measured}`);
}

export function markdown(r: Results): string {
  const m = r.machine;
  const reopened = [...r.route.rows, ...r.mqtt.rows].filter((x) => x.reopened > 0);
  return [
    `Run ${r.at} (${Math.round(r.seconds)} s, profile \`${r.plan.profile}\`), ${m.nproc} cores (${m.cpuModel}), ${m.memTotal} RAM, Node ${m.node}, kernel ${m.kernel}` +
      (m.load
        ? `; load average (1, 5, 15 min) ${m.load.before.map((x) => x.toFixed(2)).join(" ")} before, ${m.load.after.map((x) => x.toFixed(2)).join(" ")} after.`
        : "."),
    `Each figure is the median of ${r.plan.rounds} rounds of ${r.plan.roundMs / 1000} s (range in brackets), contenders alternating within each round after a ${r.plan.warmupMs / 1000} s warm-up; ` +
      `${r.plan.pairs} sender/receiver pairs on ${r.plan.workers} generator threads; "max" is a closed loop with ${r.plan.window} messages per pair in flight end to end, ` +
      `the fixed rates are an open loop (latency from the scheduled send time). Server CPU is the contender's processes (Socket.IO: its server and Redis), ` +
      `generator CPU the load generator's threads, both in % of one core.`,
    "",
    "**Targets**",
    "",
    ...targetLines(r.targets),
    "",
    ...beforeAfter(r),
    "**Ratios** (delivered msg/s at saturation)",
    "",
    ...r.ratios.map((x) => `- ${x.name}: ${x.value.toFixed(2)}`),
    "",
    "**Route** (N pairs over WebSocket; ingress/delivery/payload)",
    "",
    routeTable(r.route.rows),
    "",
    ...(r.route.skipped.length ? ["Not applicable:", "", skips(r.route.skipped), ""] : []),
    ...(reopened.length
      ? [
          `Sockets closed by the server right after their handshake and reopened before measuring: ${reopened.map((x) => `${x.contender} ${x.variant} ${x.reopened}`).join(", ")} ` +
            "(the uws engine's asynchronous upgrade inside res.cork(); see bench/workers/frames-channel.ts).",
          "",
        ]
      : []),
    "**Connections** (idle WebSocket connections held)",
    "",
    r.fdLimit.note ? `Open-file limit: ${r.fdLimit.note}.\n` : `Open-file limit: ${r.fdLimit.soft}.\n`,
    connTable(r.connections.rows),
    "",
    "**MQTT** (publisher to subscriber, QoS 1)",
    "",
    r.mqtt.rows.length ? routeTable(r.mqtt.rows) : "No MQTT rows.",
    "",
    ...(r.mqtt.skipped.length ? [skips(r.mqtt.skipped), ""] : []),
  ].join("\n");
}
