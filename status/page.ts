import { createHash } from "node:crypto";

/*
 * The status page: one static HTML document, no build step. Its inline script polls
 * /status.json every second and renders with textContent only (nothing from the JSON is ever
 * parsed as HTML). The Content-Security-Policy admits exactly this script and this style by hash.
 */

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #f6f7f9; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 20px 0 6px; }
.meta { color: #5b6475; margin-bottom: 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 14px; min-width: 130px; }
.card .label { color: #5b6475; font-size: 12px; }
.card .value { font-size: 24px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; background: #fff; border: 1px solid #dde1e8; }
th, td { text-align: left; padding: 4px 12px; border-bottom: 1px solid #eef0f4; font-variant-numeric: tabular-nums; }
th { background: #eef0f4; font-weight: 600; }
#problem { color: #a61b1b; min-height: 1.4em; }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = String(value); };
function rows(id, list, cells) {
  const body = $(id);
  body.replaceChildren(...list.map((item) => {
    const tr = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      tr.appendChild(td);
    }
    return tr;
  }));
}
const max = (list, pick) => list.reduce((m, x) => Math.max(m, pick(x)), 0);
function render(s) {
  text("node", s.node);
  text("updated", new Date(s.generatedAt).toLocaleTimeString());
  text("node-count", s.nodes.filter((n) => n.available).length);
  text("sessions-total", s.sessions.total);
  text("accepted-rate", s.throughput.acceptedPerSecond.toFixed(1));
  text("routed-rate", s.throughput.routedPerSecond.toFixed(1));
  text("window", s.throughput.windowSeconds);
  text("backlog", max(s.bus, (b) => b.backlog));
  text("in-flight", max(s.bus, (b) => b.inFlight));
  text("dead-letters", max(s.bus, (b) => b.deadLetters));
  text("oldest", max(s.bus, (b) => b.oldestUnackedSeconds).toFixed(1));
  rows("nodes", s.nodes, (n) => [n.id, n.available ? "available" : "gone", n.local ? "yes" : "", n.hostname, n.sessions ?? "-", n.services.join(" ")]);
  rows("sessions", s.sessions.byProtocolState, (g) => [g.protocol, g.state, g.count]);
  rows("bus", s.bus, (b) => [b.nodeID, b.router, b.backlog, b.inFlight, b.deadLetters, b.oldestUnackedSeconds.toFixed(1)]);
  rows("largest", s.mailboxes.largest.map((count, i) => ({ rank: i + 1, count })), (m) => [m.rank, m.count]);
  rows("rates", s.throughput.perNode, (r) => [r.nodeID, r.acceptedPerSecond.toFixed(1), r.routedPerSecond.toFixed(1)]);
  text("problem", s.problems.join("; "));
  document.body.dataset.ready = "true";
}
async function poll() {
  try {
    const res = await fetch("/status.json", { cache: "no-store" });
    if (!res.ok) throw new Error("status.json answered " + res.status);
    render(await res.json());
  } catch (err) {
    text("problem", "not updating: " + (err && err.message ? err.message : err));
  } finally {
    setTimeout(poll, 1000);
  }
}
poll();
`;

function card(id: string, label: string): string {
  return `<div class="card"><div class="label">${label}</div><div class="value" id="${id}">–</div></div>`;
}

function table(id: string, headers: readonly string[]): string {
  return `<table><thead><tr>${headers.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody id="${id}"></tbody></table>`;
}

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Routing Service status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1>Routing Service</h1>
<div class="meta">served by node <strong id="node">…</strong>, updated <span id="updated">never</span>; throughput over the last <span id="window">0</span> s</div>
<div id="problem" role="status"></div>
<div class="cards">
${card("node-count", "nodes")}
${card("sessions-total", "sessions")}
${card("accepted-rate", "accepted / s")}
${card("routed-rate", "routed / s")}
${card("backlog", "bus backlog")}
${card("in-flight", "in flight")}
${card("dead-letters", "dead letters")}
${card("oldest", "oldest unacked (s)")}
</div>
<h2>Nodes</h2>
${table("nodes", ["node", "state", "this", "host", "sessions", "services"])}
<h2>Sessions by protocol and state</h2>
${table("sessions", ["protocol", "state", "count"])}
<h2>Bus per node</h2>
${table("bus", ["node", "router", "backlog", "in flight", "dead letters", "oldest unacked (s)"])}
<h2>Largest mailboxes (message counts)</h2>
${table("largest", ["rank", "unacked messages"])}
<h2>Throughput per node</h2>
${table("rates", ["node", "accepted / s", "routed / s"])}
<script>${SCRIPT}</script>
</body>
</html>
`;

function sha256(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

const CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The page and its Content-Security-Policy (both constant for the process). */
export function statusPage(): { readonly html: string; readonly csp: string } {
  return { html: HTML, csp: CSP };
}
