import type { ServiceBroker } from "moleculer";
import { actionNodes, answers, callEach, stateText, type PerNode, type RouterStats, type SessionRow } from "../operator/cluster.ts";
import type { DeadLetterView } from "../lifecycle/dead-letters.ts";
import type { PurgeCounts } from "../lifecycle/purge.ts";
import type { RouteExplanation } from "../routing/explain.ts";
import type { ShardsView } from "../shards/coordinator.ts";
import { duration, plural, problems, table, type Cell } from "./format.ts";

/*
 * The routing REPL commands as pure functions from a broker (and arguments) to printable text,
 * so tests drive them without a terminal. They only call actions, node by node where state is
 * per node, so they work the same on the embedded node and from a REPL that joined a cluster.
 * Nothing here reads or prints a payload: mailboxes are counted, never listed.
 */

function failures<T>(results: ReadonlyArray<PerNode<T>>): string[] {
  return results.flatMap((r) => (r.ok ? [] : [`${r.nodeID}: ${r.error}`]));
}

function since(iso: string, now: number): string {
  return `${iso} (${duration(now - Date.parse(iso))} ago)`;
}

/** `sessions [urn]`: live session actors on every node (all, or one identity's). */
export async function sessionsCommand(broker: ServiceBroker, urn?: string): Promise<string> {
  const results = await callEach<SessionRow[]>(broker, "gateway.sessions", urn ? { urn } : {});
  const now = Date.now();
  const rows: Cell[][] = [];
  for (const { nodeID, value } of answers(results)) {
    for (const s of value) rows.push([nodeID, s.id, s.identity, s.protocol, s.mode, stateText(s.state), since(s.connectedAt, now), s.bufferedBytes]);
  }
  const nodes = answers(results).length;
  const head = `${plural(rows.length, "session")} on ${plural(nodes, "node")}${urn ? ` for ${urn}` : ""}`;
  const body = rows.length > 0 ? "\n" + table(["node", "session", "identity", "protocol", "mode", "state", "connected since", "send buffer (B)"], rows) : "";
  return head + body + problems(failures(results));
}

interface PresenceRow {
  readonly sessionId: string;
  readonly instanceId: string;
  readonly protocol: string;
  readonly connectedAt: string;
}

/** `presence <urn>`: where the identity is online, as the router reads it. */
export async function presenceCommand(broker: ServiceBroker, urn: string): Promise<string> {
  const entries = await broker.call<PresenceRow[], { urn: string }>("presence.get", { urn });
  if (entries.length === 0) return `${urn}: offline (no presence entry)`;
  const now = Date.now();
  const instances = new Set(entries.map((e) => e.instanceId)).size;
  return (
    `${urn}: online, ${plural(entries.length, "session")} on ${plural(instances, "instance")}\n` +
    table(
      ["session", "instance", "protocol", "connected since"],
      entries.map((e) => [e.sessionId, e.instanceId, e.protocol, since(e.connectedAt, now)]),
    )
  );
}

/** `mailbox <urn>`: depth and oldest age of the identity's mailbox; never its contents. */
export async function mailboxCommand(broker: ServiceBroker, urn: string): Promise<string> {
  const depth = await broker.call<{ count: number; oldestAgeMs: number }, { urn: string }>("mailbox.depth", { urn });
  if (depth.count === 0) return `${urn}: mailbox empty`;
  return `${urn}: ${plural(depth.count, "unacked message")}, oldest ${duration(depth.oldestAgeMs)} old`;
}

/** `route <urn>`: what the router would do now with a message to the identity, and why (`router.explain`). */
export async function routeCommand(broker: ServiceBroker, urn: string): Promise<string> {
  const x = await broker.call<RouteExplanation, { urn: string }>("router.explain", { urn });
  const now = Date.now();
  const lines = [`route to ${x.recipient}`];
  if (x.online.length === 0) lines.push("sessions: none online");
  else {
    lines.push(`sessions: ${plural(x.online.length, "session")} online`);
    lines.push(
      table(
        ["session", "instance", "protocol", "mode", "state", "connected since"],
        x.online.map((s) => [s.sessionId, s.instanceId, s.protocol, s.mode, s.state, since(s.connectedAt, now)]),
      ),
    );
  }
  lines.push(`stored message:    ${x.stored.outcome} (${x.stored.why})`);
  lines.push(`ephemeral message: ${x.ephemeral.outcome} (${x.ephemeral.why})`);
  lines.push("a messageId already stored for this recipient within the de-duplication window: duplicate (nothing more happens)");
  return lines.join("\n");
}

/** Top-level scalar fields of a stats answer, as `key=value` (nested objects are left to `bus`/`call`). */
function scalars(value: object): string {
  return Object.entries(value)
    .filter(([k, v]) => k !== "state" && (typeof v === "number" || typeof v === "string" || typeof v === "boolean"))
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(" ");
}

/**
 * `actors`: every hosted actor and its current state, node by node: each service whose `<name>.stats`
 * answers a `state` hosts an actor (the router, the push dispatcher), plus every session actor.
 */
export async function actorsCommand(broker: ServiceBroker): Promise<string> {
  const actions = await actionNodes(broker);
  const statsActions = [...actions.keys()]
    .filter((name) => name.endsWith(".stats"))
    .sort((a, b) => (a === "router.stats" ? -1 : b === "router.stats" ? 1 : a.localeCompare(b)));
  const [statsResults, sessionResults] = await Promise.all([
    Promise.all(
      statsActions.map(async (action) => ({
        actor: action.slice(0, -".stats".length),
        results: await callEach<object>(broker, action, {}, actions.get(action)),
      })),
    ),
    callEach<SessionRow[]>(broker, "gateway.sessions", {}, actions.get("gateway.sessions")),
  ]);
  const rows: Array<{ node: string; cells: Cell[] }> = [];
  const failed: string[] = [];
  for (const { actor, results } of statsResults) {
    failed.push(...failures(results));
    for (const { nodeID, value } of answers(results)) {
      if (!("state" in value)) continue;
      rows.push({ node: nodeID, cells: [nodeID, actor, stateText(value.state), scalars(value)] });
    }
  }
  failed.push(...failures(sessionResults));
  for (const { nodeID, value } of answers(sessionResults)) {
    for (const s of value) rows.push({ node: nodeID, cells: [nodeID, `session ${s.id}`, stateText(s.state), `${s.identity} ${s.protocol}/${s.mode}`] });
  }
  // Stable order: by node; within a node the service actors first, then sessions.
  const ordered = rows.map((r, i) => ({ ...r, i })).sort((a, b) => a.node.localeCompare(b.node) || a.i - b.i);
  return (
    `${plural(rows.length, "actor")}\n` +
    table(
      ["node", "actor", "state", "detail"],
      ordered.map((r) => r.cells),
    ) +
    problems(failed)
  );
}

/** `bus`: the ingress bus and the router of every node (`router.stats`). */
export async function busCommand(broker: ServiceBroker): Promise<string> {
  const results = await callEach<RouterStats>(broker, "router.stats");
  const rows = answers(results).map(({ nodeID, value }) => [
    nodeID,
    stateText(value.state),
    value.bus.backlog,
    value.bus.inFlight,
    value.bus.deadLetters,
    duration(value.bus.oldestUnackedAgeMs),
    value.routed,
  ]);
  if (results.length === 0) return "no router on any node";
  return table(["node", "router", "backlog", "in flight", "dead letters", "oldest unacked", "routed (since start)"], rows) + problems(failures(results));
}

/** `deadletters [limit]`: the ingress bus's dead letters (`router.deadLetters`): header fields, reason, attempts; never payload. */
export async function deadLettersCommand(broker: ServiceBroker, limit?: number): Promise<string> {
  const letters = await broker.call<DeadLetterView[], { limit?: number }>("router.deadLetters", limit === undefined ? {} : { limit });
  if (letters.length === 0) return "no dead letters";
  const now = Date.now();
  return (
    `${plural(letters.length, "dead letter")} (newest first)\n` +
    table(
      ["id", "recipient", "message id", "sender", "prio", "path", "attempts", "reason", "dead since"],
      letters.map((d) => [d.id, d.recipientId, d.messageId, d.senderId ?? "", d.priority, d.path, d.attempts, d.reason, since(d.deadAt, now)]),
    )
  );
}

/** `replay <ids...>`: puts dead letters back on the ingress bus with their message ids (`router.replay`). */
export async function replayCommand(broker: ServiceBroker, ids: readonly string[]): Promise<string> {
  if (ids.length === 0) return "usage: replay <id> [id ...] (ids from `deadletters`)";
  const { replayed } = await broker.call<{ replayed: number }, { ids: readonly string[] }>("router.replay", { ids });
  return `${plural(replayed, "dead letter")} replayed onto the ingress bus${replayed < ids.length ? ` (${ids.length - replayed} not found)` : ""}`;
}

/** `dropdeadletters <ids...>`: deletes dead letters (`router.dropDeadLetters`). */
export async function dropDeadLettersCommand(broker: ServiceBroker, ids: readonly string[]): Promise<string> {
  if (ids.length === 0) return "usage: dropdeadletters <id> [id ...] (ids from `deadletters`)";
  const { dropped } = await broker.call<{ dropped: number }, { ids: readonly string[] }>("router.dropDeadLetters", { ids });
  return `${plural(dropped, "dead letter")} dropped${dropped < ids.length ? ` (${ids.length - dropped} not found)` : ""}`;
}

/** `purge <urn>`: removes everything kept of an identity (`mailbox.purge`) and prints the counts. */
export async function purgeCommand(broker: ServiceBroker, urn: string): Promise<string> {
  const c = await broker.call<PurgeCounts, { urn: string }>("mailbox.purge", { urn });
  return `${urn}: purged ${plural(c.messages, "message")}, ${plural(c.dedup, "de-duplication record")}, ${plural(c.deviceTokens, "device token")}, ${`${c.pendingPushes} pending push${c.pendingPushes === 1 ? "" : "es"}`}, ${plural(c.deadLetters, "dead letter")}`;
}

/**
 * `shards`: who owns each shard and at which epoch, and how many each node owns (sharded delivery).
 * The leases live in the engine, so any node's `shards.list` answers for the whole cluster.
 */
export async function shardsCommand(broker: ServiceBroker): Promise<string> {
  let view: ShardsView;
  try {
    view = await broker.call<ShardsView>("shards.list");
  } catch (err) {
    if ((err as { name?: string }).name === "ServiceNotFoundError") return "sharded delivery is off (ROUTING_DELIVERY_STRATEGY is not sharded)";
    throw err;
  }
  const perNode = new Map<string, number>(view.members.map((m) => [m.id, 0]));
  for (const o of view.owners) perNode.set(o.owner, (perNode.get(o.owner) ?? 0) + 1);
  const urls = new Map(view.members.map((m) => [m.id, m.url]));
  const unowned = view.shardCount - view.owners.length;
  const head =
    `${plural(view.shardCount, "shard")} on ${view.engine} (as ${view.nodeId} reads it${view.healthy ? "" : `; ${view.engine} NOT reachable, last view`}), ` +
    `${plural(view.members.length, "live node")}, ${unowned === 0 ? "every shard owned" : `${plural(unowned, "shard")} without an owner`}`;
  const nodes = table(
    ["node", "url", "shards owned"],
    [...perNode].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, n]) => [id + (urls.has(id) ? "" : " (not a live member)"), urls.get(id) ?? "", n]),
  );
  const shards = table(
    ["shard", "owner", "epoch"],
    view.owners.map((o) => [o.shard, o.owner, o.epoch]),
  );
  return `${head}\n${nodes}\n${shards}`;
}

/** moleculer-repl's custom command definition (the subset used here). */
export interface ReplCommand {
  readonly command: string;
  readonly description: string;
  readonly action: (broker: ServiceBroker, args: Readonly<Record<string, unknown>>) => Promise<void>;
}

function print(run: (broker: ServiceBroker, args: Readonly<Record<string, unknown>>) => Promise<string>): ReplCommand["action"] {
  return async (broker, args) => {
    try {
      console.log(await run(broker, args));
    } catch (err) {
      console.log(`error: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
}

const urnArg = (args: Readonly<Record<string, unknown>>): string => String(args.urn ?? "");
/** A variadic argument as moleculer-repl (vorpal) hands it: an array, one value, or nothing. */
const listArg = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : value === undefined ? [] : [String(value)]);
const limitArg = (value: unknown): number | undefined =>
  value === undefined || value === "" || !Number.isFinite(Number(value)) ? undefined : Math.floor(Number(value));

/** The routing commands, beside moleculer-repl's own (`call`, `nodes`, `services`, `actions`, ...). */
export const REPL_COMMANDS: readonly ReplCommand[] = [
  {
    command: "sessions [urn]",
    description: "Live session actors (all, or one identity's): node, id, identity, protocol, mode, state, connected since, send buffer",
    action: print((b, a) => sessionsCommand(b, typeof a.urn === "string" ? a.urn : undefined)),
  },
  { command: "presence <urn>", description: "Where an identity is online, as the router reads it", action: print((b, a) => presenceCommand(b, urnArg(a))) },
  { command: "mailbox <urn>", description: "Mailbox depth and oldest age (never contents)", action: print((b, a) => mailboxCommand(b, urnArg(a))) },
  {
    command: "route <urn>",
    description: "What the router would do now with a message to this identity, and why",
    action: print((b, a) => routeCommand(b, urnArg(a))),
  },
  { command: "actors", description: "Every hosted actor (router, push, sessions) and its current state", action: print((b) => actorsCommand(b)) },
  { command: "bus", description: "Ingress bus backlog, in-flight, dead letters and oldest unacked age, per node", action: print((b) => busCommand(b)) },
  {
    command: "deadletters [limit]",
    description: "Dead letters of the ingress bus: id, recipient, message id, sender, reason, attempts (never payload)",
    action: print((b, a) => deadLettersCommand(b, limitArg(a.limit))),
  },
  {
    command: "replay [ids...]",
    description: "Put dead letters back on the ingress bus with their message ids",
    action: print((b, a) => replayCommand(b, listArg(a.ids))),
  },
  { command: "dropdeadletters [ids...]", description: "Delete dead letters", action: print((b, a) => dropDeadLettersCommand(b, listArg(a.ids))) },
  {
    command: "purge <urn>",
    description: "Remove everything kept of an identity: messages, de-duplication records, device tokens, pending pushes",
    action: print((b, a) => purgeCommand(b, urnArg(a))),
  },
  { command: "shards", description: "Sharded delivery: owner and epoch of every shard, shards owned per node", action: print((b) => shardsCommand(b)) },
];
