import { CLOSE } from "../core/close-codes.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { ShardDirectory } from "../shards/directory.ts";
import type { SocketHandle, SocketListener } from "./engine.ts";
import type { SessionHost } from "./sessions.ts";

/**
 * Where an identity's sessions belong under `sharded` delivery (contract, "Sharded delivery"):
 * on the owner of its shard. Another node sends a WebSocket away with 4010 MOVED (reason: the
 * owner's ROUTING_PUBLIC_URL) and an MQTT client with a refused CONNACK; `GET /route` says where
 * the owner is. HTTP routes work on every node.
 */
export interface Placement {
  /** undefined: every session belongs here (one node, or not `sharded`). */
  readonly shards?: ShardDirectory;
  readonly instanceId: string;
  readonly shardCount: number;
  /** This node's ROUTING_PUBLIC_URL (known once the HTTP port is bound). */
  readonly selfUrl: () => string;
}

/** How long a client waits before asking again while a shard has no owner. */
const NO_OWNER_RETRY_MS = 1000;

function noOwner(shard: number): RoutingError {
  return new RoutingError("NO_SHARD_OWNER", `shard ${shard} has no owner right now; retry`, { retryAfterMs: NO_OWNER_RETRY_MS });
}

/** Undefined: the identity's sessions belong here; a URL: they belong to that node (MOVED). Throws NO_SHARD_OWNER. */
export function movedTo(placement: Placement | undefined, identity: Urn): string | undefined {
  const shards = placement?.shards;
  if (placement === undefined || shards === undefined) return undefined;
  const shard = shards.shardOf(identity);
  if (shards.ownsShard(shard)) return undefined;
  const owner = shards.ownerOf(shard);
  // Our own lease in doubt (lapsing or not yet granted) is no owner either.
  if (owner === undefined || owner.owner === placement.instanceId) throw noOwner(shard);
  return owner.url;
}

/** `GET /route`: the caller's shard, its owner and the owner's URL. */
export function routeOf(placement: Placement, identity: Urn): { shard: number; owner: string; url: string } {
  const shards = placement.shards;
  if (shards === undefined) return { shard: 0, owner: placement.instanceId, url: placement.selfUrl() };
  const shard = shards.shardOf(identity);
  if (shards.ownsShard(shard)) return { shard, owner: placement.instanceId, url: placement.selfUrl() };
  const owner = shards.ownerOf(shard);
  if (owner === undefined || owner.owner === placement.instanceId) throw noOwner(shard);
  return { shard, owner: owner.owner, url: owner.url };
}

/** A socket sent away: closed at once with 4010 and the owner's URL; its events mean nothing. */
export function closeMoved(socket: SocketHandle, url: string, release: () => void): SocketListener {
  socket.close(CLOSE.MOVED, url);
  return { message: () => {}, pong: () => {}, drain: () => {}, closed: release };
}

/**
 * A shard this node stops owning takes its sessions with it: each is closed with 4010 MOVED and
 * the new owner's URL (empty while none is known: the client asks again and is answered then).
 * Returns the unsubscribe.
 */
export function moveSessionsOnLoss(placement: Placement, sessions: SessionHost, draining: () => boolean): () => void {
  const shards = placement.shards;
  if (shards === undefined) return () => {};
  return shards.onChange((shard, owned) => {
    // The drain hands every shard over and closes the sessions itself (flushed, then 1001).
    if (owned || draining()) return;
    const owner = shards.ownerOf(shard);
    const url = owner !== undefined && owner.owner !== placement.instanceId ? owner.url : "";
    for (const session of sessions.sessions()) {
      if (shards.shardOf(session.identity) === shard) session.transport.close(CLOSE.MOVED, url);
    }
  });
}
