/** The targets and the ratios against the baselines, from one run's rows. */
import type { ConnRow } from "../scenarios/connections.ts";
import type { Row } from "../scenarios/matrix.ts";
import type { Ratio, Target } from "./results.ts";

const CORE = "ws/push/200B";

function row(rows: readonly Row[], variant: string, load: string, contender: string): Row | undefined {
  return rows.find((r) => r.variant === variant && r.load === load && r.contender === contender);
}

export function ratiosOf(route: readonly Row[], mqtt: readonly Row[]): Ratio[] {
  const out: Ratio[] = [];
  const variants = [...new Set(route.map((r) => r.variant))];
  const pairs: Array<[string, string]> = [
    ["service-uws", "relay-uws"],
    ["service-ws", "relay-ws"],
    ["service-uws", "socketio"],
    ["service-ws", "socketio"],
    ["relay-uws", "relay-ws"],
    ["service-uws", "service-ws"],
    ["service-uws", "baseline-uws"],
  ];
  for (const variant of variants) {
    for (const [a, b] of pairs) {
      const x = row(route, variant, "max", a);
      const y = row(route, variant, "max", b);
      if (x && y) out.push({ name: `${variant} max: ${a} / ${b}`, value: x.throughput.median / y.throughput.median });
    }
  }
  const ms = row(mqtt, "mqtt/push/200B", "max", "service-uws");
  const mm = row(mqtt, "mqtt/push/200B", "max", "mosquitto");
  if (ms && mm) out.push({ name: "mqtt/push/200B max: service-uws / mosquitto", value: ms.throughput.median / mm.throughput.median });
  return out;
}

export function targetsOf(route: readonly Row[], conns: readonly ConnRow[]): Target[] {
  const service = row(route, CORE, "max", "service-uws");
  const relay = row(route, CORE, "max", "relay-uws");
  const sio = row(route, CORE, "max", "socketio");
  const at5k = row(route, CORE, "5k/s", "service-uws");
  const biggest = conns.filter((c) => c.contender === "service-uws").sort((a, b) => b.requested - a.requested)[0];
  const ratio = (x?: Row, y?: Row) => (x && y ? x.throughput.median / y.throughput.median : Number.NaN);
  const t1 = ratio(service, relay);
  const t2 = ratio(service, sio);
  return [
    { name: "route throughput (uws, push, 200 B) >= 50% of the bare uWS relay", holds: Number.isFinite(t1) ? t1 >= 0.5 : undefined, measured: `${(100 * t1).toFixed(0)}%` },
    { name: "route throughput >= 2x Socket.IO + Redis adapter", holds: Number.isFinite(t2) ? t2 >= 2 : undefined, measured: `${t2.toFixed(2)}x` },
    {
      name: "p99 latency at 5k msg/s < 5 ms (uws, push, 200 B)",
      holds: at5k ? at5k.p99.median < 5 : undefined,
      measured: at5k ? `${at5k.p99.median.toFixed(2)} ms (achieved ${Math.round(at5k.throughput.median)} msg/s)` : "not measured",
    },
    {
      name: `50k idle WebSocket connections at <= 4 KiB server RSS each (uws)`,
      holds: biggest ? biggest.target >= 50_000 && biggest.rssPerConnKiB.median <= 4 : undefined,
      measured: biggest
        ? `${biggest.rssPerConnKiB.median.toFixed(1)} KiB/conn at ${Math.round(biggest.held.median).toLocaleString("en-US")} held` +
          (biggest.target < biggest.requested ? ` (${biggest.requested.toLocaleString("en-US")} asked; capped by the open-file limit)` : "")
        : "not measured",
    },
  ];
}
