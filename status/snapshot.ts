import type { ServiceBroker } from "moleculer";
import { answers, callEach, listNodes, stateText, type NodeView, type RouterStats, type SessionRow } from "../operator/cluster.ts";
import type { Rates } from "./throughput.ts";

/**
 * The status page's data. Counts and node ids only: sessions are counted, never listed (no
 * identity, message id or payload leaves through it).
 */
export interface StatusSnapshot {
  /** The node that answered. */
  readonly node: string;
  readonly generatedAt: string;
  readonly nodes: ReadonlyArray<NodeView & { readonly sessions: number | null }>;
  readonly sessions: {
    readonly total: number;
    readonly byProtocolState: ReadonlyArray<{ readonly protocol: string; readonly state: string; readonly count: number }>;
  };
  readonly bus: ReadonlyArray<{
    readonly nodeID: string;
    readonly router: string;
    readonly backlog: number;
    readonly inFlight: number;
    readonly deadLetters: number;
    readonly oldestUnackedSeconds: number;
  }>;
  readonly throughput: Rates & { readonly perNode: ReadonlyArray<Rates & { readonly nodeID: string }> };
  /** The largest mailboxes' message counts, largest first (counts only, no identity). */
  readonly mailboxes: { readonly largest: readonly number[] };
  /** Nodes that did not answer a query, and why. */
  readonly problems: readonly string[];
}

/** Asks every node for its sessions, router stats and throughput (`status.throughput`) and sums them up. */
export async function statusSnapshot(broker: ServiceBroker): Promise<StatusSnapshot> {
  const [nodes, sessionResults, routerResults, rateResults, largest] = await Promise.all([
    listNodes(broker),
    callEach<SessionRow[]>(broker, "gateway.sessions"),
    callEach<RouterStats>(broker, "router.stats"),
    callEach<Rates>(broker, "status.throughput"),
    // The store is shared by the cluster (or this node's own): one answer is the picture.
    broker.call<{ counts: number[] }, { limit: number }>("mailbox.largest", { limit: 5 }).then(
      (r) => ({ ok: true as const, counts: r.counts }),
      (err: unknown) => ({ ok: false as const, error: err instanceof Error ? err.message : String(err) }),
    ),
  ]);
  const problems = [...sessionResults, ...routerResults, ...rateResults].flatMap((r) => (r.ok ? [] : [`${r.nodeID}: ${r.error}`]));
  if (!largest.ok) problems.push(`mailbox.largest: ${largest.error}`);

  const perNodeSessions = new Map(answers(sessionResults).map((a) => [a.nodeID, a.value]));
  const groups = new Map<string, { protocol: string; state: string; count: number }>();
  for (const rows of perNodeSessions.values()) {
    for (const row of rows) {
      const state = stateText(row.state).split(".")[0];
      const key = `${row.protocol}/${state}`;
      const group = groups.get(key) ?? { protocol: row.protocol, state, count: 0 };
      group.count++;
      groups.set(key, group);
    }
  }
  const byProtocolState = [...groups.values()].sort((a, b) => a.protocol.localeCompare(b.protocol) || a.state.localeCompare(b.state));

  const perNode = answers(rateResults).map((a) => ({ nodeID: a.nodeID, ...a.value }));
  const sum = (pick: (r: Rates) => number) => Math.round(perNode.reduce((acc, r) => acc + pick(r), 0) * 100) / 100;

  return {
    node: broker.nodeID,
    generatedAt: new Date().toISOString(),
    nodes: nodes.map((n) => ({ ...n, sessions: perNodeSessions.get(n.id)?.length ?? null })),
    sessions: { total: byProtocolState.reduce((acc, g) => acc + g.count, 0), byProtocolState },
    bus: answers(routerResults).map(({ nodeID, value }) => ({
      nodeID,
      router: stateText(value.state),
      backlog: value.bus.backlog,
      inFlight: value.bus.inFlight,
      deadLetters: value.bus.deadLetters,
      oldestUnackedSeconds: Math.round(value.bus.oldestUnackedAgeMs / 100) / 10,
    })),
    throughput: {
      windowSeconds: Math.max(0, ...perNode.map((r) => r.windowSeconds)),
      acceptedPerSecond: sum((r) => r.acceptedPerSecond),
      routedPerSecond: sum((r) => r.routedPerSecond),
      perNode,
    },
    mailboxes: { largest: largest.ok ? largest.counts : [] },
    problems,
  };
}
