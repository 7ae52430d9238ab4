/**
 * results/latest.svg, drawn by hand (no chart library): three panels of horizontal bars with
 * min–max whiskers — delivered msg/s at saturation, p99 latency at 5k msg/s (WebSocket send,
 * push, 200 B), and server RSS per idle connection at the largest level held.
 */
import type { Spread } from "../lib/stats.ts";
import type { Results } from "./results.ts";

interface Bar {
  readonly label: string;
  readonly value: Spread;
}

const COLORS: Record<string, string> = {
  "relay-uws": "#9aa5b1",
  "relay-ws": "#c3cbd3",
  socketio: "#e0a458",
  "service-uws": "#2f6db5",
  "service-ws": "#6d9fd8",
  mosquitto: "#9aa5b1",
  aedes: "#c3cbd3",
  "baseline-uws": "#b9c9de",
};

const W = 760;
const LABEL = 110;
const ROW = 22;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}

function panel(title: string, unit: string, bars: readonly Bar[], y0: number, digits: number): { svg: string; height: number } {
  const plot = W - LABEL - 120;
  const max = Math.max(1e-9, ...bars.map((b) => (Number.isFinite(b.value.max) ? b.value.max : b.value.median)).filter(Number.isFinite));
  const x = (v: number) => LABEL + (plot * Math.max(0, v)) / max;
  const parts = [`<text x="8" y="${y0 + 14}" font-weight="bold">${esc(title)}</text>`];
  bars.forEach((b, i) => {
    const y = y0 + 24 + i * ROW;
    const v = b.value;
    const color = COLORS[b.label] ?? "#888";
    parts.push(`<text x="${LABEL - 6}" y="${y + 13}" text-anchor="end">${esc(b.label)}</text>`);
    if (!Number.isFinite(v.median)) {
      parts.push(`<text x="${LABEL + 4}" y="${y + 13}" fill="#888">not measured</text>`);
      return;
    }
    parts.push(`<rect x="${LABEL}" y="${y + 2}" width="${(x(v.median) - LABEL).toFixed(1)}" height="${ROW - 6}" fill="${color}"/>`);
    if (Number.isFinite(v.min) && v.max > v.min) {
      const mid = y + ROW / 2 - 1;
      parts.push(`<line x1="${x(v.min).toFixed(1)}" x2="${x(v.max).toFixed(1)}" y1="${mid}" y2="${mid}" stroke="#222"/>`);
      parts.push(`<line x1="${x(v.min).toFixed(1)}" x2="${x(v.min).toFixed(1)}" y1="${mid - 4}" y2="${mid + 4}" stroke="#222"/>`);
      parts.push(`<line x1="${x(v.max).toFixed(1)}" x2="${x(v.max).toFixed(1)}" y1="${mid - 4}" y2="${mid + 4}" stroke="#222"/>`);
    }
    const label = digits === 0 ? Math.round(v.median).toLocaleString("en-US") : v.median.toFixed(digits);
    parts.push(`<text x="${(Math.max(x(v.median), Number.isFinite(v.max) ? x(v.max) : 0) + 6).toFixed(1)}" y="${y + 13}">${label} ${esc(unit)}</text>`);
  });
  return { svg: parts.join("\n"), height: 24 + bars.length * ROW + 16 };
}

const ORDER = ["relay-uws", "relay-ws", "socketio", "service-uws", "service-ws", "baseline-uws"];

export function chartSvg(r: Results): string {
  const pick = (load: string) =>
    ORDER.flatMap((c) => {
      const row = r.route.rows.find((x) => x.variant === "ws/push/200B" && x.load === load && x.contender === c);
      return row ? [{ label: c, value: load === "max" ? row.throughput : row.p99 }] : [];
    });
  const conns = ORDER.flatMap((c) => {
    const rows = r.connections.rows.filter((x) => x.contender === c).sort((a, b) => b.target - a.target);
    return rows[0] ? [{ label: c, value: rows[0].rssPerConnKiB }] : [];
  });
  const biggest = Math.max(0, ...r.connections.rows.map((x) => x.held.median).filter(Number.isFinite));
  const panels = [
    panel("Delivered msg/s at saturation — WebSocket send, push, 200 B (higher is better)", "msg/s", pick("max"), 0, 0),
    panel("p99 latency at 5k msg/s offered — same route (lower is better)", "ms", pick("5k/s"), 0, 2),
    panel(`Server RSS per idle WebSocket connection at ~${Math.round(biggest).toLocaleString("en-US")} held (lower is better)`, "KiB", conns, 0, 1),
  ];
  let y = 30;
  const body: string[] = [];
  for (const p of panels) {
    body.push(`<g transform="translate(0,${y})">${p.svg}</g>`);
    y += p.height;
  }
  const note = `${r.machine.nproc} cores ${esc(r.machine.cpuModel)}, Node ${r.machine.node}; ${r.at}; whiskers: min–max of ${r.plan.rounds} rounds`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 24}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="18" font-size="15" font-weight="bold">Routing Service benchmark</text>`,
    ...body,
    `<text x="8" y="${y + 14}" fill="#555" font-size="11">${note}</text>`,
    "</svg>",
  ].join("\n");
}
