import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { PushPlatform } from "../backends/device-store.ts";
import type { IngressPath } from "../backends/ingress-bus.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { PushResult } from "../push/sender.ts";

/** What the signal bridges count (routing/signals.ts). */
export interface SignalCounters {
  /** A signal arrived at this instance. */
  received(): void;
  /** ...and reached at least one local session (the rest is noise). */
  delivered(): void;
}

export type RouteOutcome = "delivered_online" | "push_due" | "ephemeral_delivered" | "ephemeral_dropped" | "duplicate" | "owner_decides";

/**
 * Every metric of one node, on its own registry (several nodes may share a process in tests).
 * Labels are closed sets (paths, codes, outcomes, protocols): never URNs, ids or payload data.
 */
export function createMetrics() {
  const registry = new Registry();
  // prom-client's own names already start with process_ / nodejs_: the prefix only adds "routing_"
  // (routing_process_cpu_user_seconds_total, routing_nodejs_eventloop_lag_seconds).
  collectDefaultMetrics({ register: registry, prefix: "routing_" });
  const accepted = new Counter({
    name: "routing_envelopes_accepted_total",
    help: "Envelopes accepted by the ingress bus, per ingestion path.",
    labelNames: ["path"] as const,
    registers: [registry],
  });
  const rejected = new Counter({
    name: "routing_envelopes_rejected_total",
    help: "Envelopes refused at ingress, per path and error code.",
    labelNames: ["path", "code"] as const,
    registers: [registry],
  });
  const routed = new Counter({
    name: "routing_routed_total",
    help: "Router outcomes per bus record.",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const routeFailures = new Counter({
    name: "routing_route_failures_total",
    help: "Bus records whose routing failed and were nacked for redelivery.",
    registers: [registry],
  });
  const latency = new Histogram({
    name: "routing_end_to_end_latency_seconds",
    help: "From ingress acceptance to the recipient being signalled (or the push being queued).",
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const sessions = new Gauge({
    name: "routing_sessions",
    help: "Open sessions by protocol and state.",
    labelNames: ["protocol", "state"] as const,
    registers: [registry],
  });
  const closes = new Counter({
    name: "routing_session_closes_total",
    help: "Sessions closed, by close code.",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const busBacklog = new Gauge({
    name: "routing_bus_backlog",
    help: "Ingress records accepted but not yet acked.",
    labelNames: ["bus"] as const,
    registers: [registry],
  });
  const busInFlight = new Gauge({
    name: "routing_bus_in_flight",
    help: "Ingress records being routed now.",
    labelNames: ["bus"] as const,
    registers: [registry],
  });
  const busDead = new Gauge({
    name: "routing_bus_dead_letters",
    help: "Ingress records in the dead-letter place.",
    labelNames: ["bus"] as const,
    registers: [registry],
  });
  const busOldest = new Gauge({
    name: "routing_bus_oldest_unacked_seconds",
    help: "Age of the oldest unacked ingress record.",
    labelNames: ["bus"] as const,
    registers: [registry],
  });
  const http = new Counter({
    name: "routing_http_requests_total",
    help: "HTTP requests by route and status.",
    labelNames: ["route", "status"] as const,
    registers: [registry],
  });
  const push = new Counter({
    name: "routing_push_total",
    help: "Push provider answers, per platform and result (sent, retry, invalidToken, failed).",
    labelNames: ["platform", "result"] as const,
    registers: [registry],
  });
  // operator tools (issue 7)
  const mailboxDepth = new Gauge({
    name: "routing_mailbox_depth",
    help: "Unacked messages in every mailbox of the store, read once per scrape.",
    registers: [registry],
  });
  // data life cycle (issue 21): counts only, never a URN
  const mailboxExpired = new Counter({
    name: "routing_mailbox_expired_total",
    help: "Unacked messages removed because they outlived ROUTING_MAILBOX_RETENTION_SECONDS.",
    registers: [registry],
  });
  const mailboxFull = new Counter({
    name: "routing_mailbox_full_total",
    help: "Sends refused with MAILBOX_FULL (recipient at its quota), per ingestion path.",
    labelNames: ["path"] as const,
    registers: [registry],
  });
  const mailboxLargest = new Gauge({
    name: "routing_mailbox_largest_depth",
    help: "Message counts of the largest mailboxes, by rank (1 = largest), read once per scrape.",
    labelNames: ["rank"] as const,
    registers: [registry],
  });
  const signalsReceived = new Counter({
    name: "routing_signals_received_total",
    help: "Signals from other instances that arrived here.",
    registers: [registry],
  });
  const signalsDelivered = new Counter({
    name: "routing_signals_delivered_total",
    help: "Arrived signals that reached at least one local session (received minus delivered is noise).",
    registers: [registry],
  });
  // sharded delivery (issue 15): this node's share of the shards (0 unless ROUTING_DELIVERY_STRATEGY=sharded)
  const shardsOwned = new Gauge({ name: "routing_shards_owned", help: "Shards this node owns now (sharded delivery).", registers: [registry] });
  // batch send (issue 20): envelopes per `POST /send/batch`, whatever became of each.
  const batchSizes = new Histogram({
    name: "routing_send_batch_envelopes",
    help: "Envelopes per POST /send/batch request.",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [registry],
  });
  // Every path and outcome exists from the start (at 0), so rate() and dashboards work before the first event.
  const paths: Record<IngressPath, true> = { http: true, ws: true, mqtt: true, action: true };
  const outcomes: Record<RouteOutcome, true> = {
    delivered_online: true,
    push_due: true,
    ephemeral_delivered: true,
    ephemeral_dropped: true,
    duplicate: true,
    owner_decides: true,
  };
  for (const path of Object.keys(paths)) accepted.inc({ path }, 0);
  for (const path of Object.keys(paths)) mailboxFull.inc({ path }, 0);
  for (const outcome of Object.keys(outcomes)) routed.inc({ outcome }, 0);
  // Server-Sent-Events streams (issue 20) show beside WebSocket and MQTT from the start.
  for (const protocol of ["ws", "mqtt", "sse"]) sessions.inc({ protocol, state: "online" }, 0);
  /** Plain running totals beside the counters, for the status page's throughput (no async registry read). */
  const totals = { accepted: 0, routed: 0 };
  const refreshers: Array<() => Promise<void>> = [];
  return {
    registry,
    /** Registers a gauge updater run before every scrape (backlogs, depths read from backends). */
    onScrape: (refresh: () => Promise<void>) => refreshers.push(refresh),
    scrape: async (): Promise<string> => {
      await Promise.allSettled(refreshers.map((r) => r()));
      return registry.metrics();
    },
    busBacklog,
    busInFlight,
    busDead,
    busOldest,
    sessions,
    accepted: (path: IngressPath) => {
      accepted.inc({ path });
      totals.accepted++;
    },
    rejected: (path: IngressPath, code: ErrorCode) => rejected.inc({ path, code }),
    routed: (outcome: RouteOutcome, acceptedAt: number) => {
      routed.inc({ outcome });
      latency.observe((Date.now() - acceptedAt) / 1000);
      totals.routed++;
    },
    routeFailed: () => routeFailures.inc(),
    batchSize: (envelopes: number) => batchSizes.observe(envelopes),
    sessionClosed: (code: number) => closes.inc({ code: String(code) }),
    httpRequest: (route: string, status: number) => http.inc({ route, status: String(status) }),
    pushed: (platform: PushPlatform, result: PushResult["kind"]) => push.inc({ platform, result }),
    mailboxDepth,
    shardsOwned,
    mailboxExpired: (count: number) => mailboxExpired.inc(count),
    mailboxFull: (path: IngressPath) => mailboxFull.inc({ path }),
    /** Sets the ranked gauge from counts largest first; ranks past the list read 0. */
    mailboxLargest: (counts: readonly number[], ranks: number) => {
      for (let rank = 1; rank <= ranks; rank++) mailboxLargest.set({ rank: String(rank) }, counts[rank - 1] ?? 0);
    },
    /** Envelopes accepted and bus records routed by this node since it started. */
    totals: (): { readonly accepted: number; readonly routed: number } => ({ ...totals }),
    /** The counters `createSignalReceiver` takes: a signal arrived; it reached a local session. */
    signalCounters: (): SignalCounters => ({ received: () => signalsReceived.inc(), delivered: () => signalsDelivered.inc() }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
