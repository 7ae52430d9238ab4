import type { ServiceBroker } from "moleculer";

/*
 * Read-only queries over the cluster as this broker's registry sees it, shared by the REPL
 * commands and the status page. Every call names its node, so a cluster answers node by node
 * instead of one balanced endpoint answering for all; the same code runs on one embedded node.
 */

/** How long one node may take to answer an operator query before it is reported as failed. */
const CALL_TIMEOUT_MS = 3000;

export interface NodeView {
  readonly id: string;
  readonly local: boolean;
  readonly available: boolean;
  readonly hostname: string;
  /** Non-internal services the node hosts. */
  readonly services: readonly string[];
}

export type PerNode<T> =
  { readonly nodeID: string; readonly ok: true; readonly value: T } | { readonly nodeID: string; readonly ok: false; readonly error: string };

interface RawNode {
  readonly id: string;
  readonly local: boolean;
  readonly available: boolean;
  readonly hostname?: string | null;
}
interface RawService {
  readonly name: string;
  readonly nodeID: string;
}
interface RawAction {
  readonly name: string;
  readonly endpoints?: ReadonlyArray<{ readonly nodeID: string; readonly available: boolean }>;
}

/** Every node the registry knows (available or not), with the services each hosts. */
export async function listNodes(broker: ServiceBroker): Promise<NodeView[]> {
  const local = { nodeID: broker.nodeID };
  const [nodes, services] = await Promise.all([
    broker.call<RawNode[], { onlyAvailable: boolean }>("$node.list", { onlyAvailable: false }, local),
    broker.call<RawService[], object>("$node.services", { skipInternal: true, onlyAvailable: false, grouping: false }, local),
  ]);
  return nodes
    .map((n) => ({
      id: n.id,
      local: n.local,
      available: n.available,
      hostname: n.hostname ?? "",
      services: services
        .filter((s) => s.nodeID === n.id)
        .map((s) => s.name)
        .sort(),
    }))
    .sort((a, b) => a.id.localeCompare(b.id));
}

/** Available actions by name, each with the nodes that serve it. */
export async function actionNodes(broker: ServiceBroker): Promise<Map<string, string[]>> {
  const actions = await broker.call<RawAction[], object>(
    "$node.actions",
    { withEndpoints: true, onlyAvailable: true, skipInternal: true },
    { nodeID: broker.nodeID },
  );
  return new Map(
    actions.map((a) => [
      a.name,
      (a.endpoints ?? [])
        .filter((e) => e.available)
        .map((e) => e.nodeID)
        .sort(),
    ]),
  );
}

/** Calls `action` on every node that serves it (or on `nodes`); a node that fails is reported, not thrown. */
export async function callEach<T>(broker: ServiceBroker, action: string, params: object = {}, nodes?: readonly string[]): Promise<Array<PerNode<T>>> {
  const targets = nodes ?? (await actionNodes(broker)).get(action) ?? [];
  return Promise.all(
    targets.map(async (nodeID): Promise<PerNode<T>> => {
      try {
        return { nodeID, ok: true, value: await broker.call<T, object>(action, params, { nodeID, timeout: CALL_TIMEOUT_MS }) };
      } catch (err) {
        return { nodeID, ok: false, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}

/** The successful answers of `callEach`, with their node. */
export function answers<T>(results: ReadonlyArray<PerNode<T>>): Array<{ nodeID: string; value: T }> {
  return results.flatMap((r) => (r.ok ? [{ nodeID: r.nodeID, value: r.value }] : []));
}

/** What `gateway.sessions` answers per session (services/gateway.service.ts). */
export interface SessionRow {
  readonly id: string;
  readonly identity: string;
  readonly protocol: string;
  readonly mode: string;
  readonly state: unknown;
  readonly connectedAt: string;
  readonly bufferedBytes: number;
}

/** What `router.stats` answers (services/router.service.ts). */
export interface RouterStats {
  readonly state: unknown;
  readonly inFlight: number;
  readonly routed: number;
  readonly bus: { readonly backlog: number; readonly inFlight: number; readonly deadLetters: number; readonly oldestUnackedAgeMs: number };
}

/** An XState state value as one word path: "online.live" for {online: "live"}. */
export function stateText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object") {
    const [key, inner] = Object.entries(value)[0] ?? [];
    if (key === undefined) return "?";
    const rest = stateText(inner);
    return rest === "?" ? key : `${key}.${rest}`;
  }
  return "?";
}
