/** One connection's session object, its transport seam and the types the edges share (the host is sessions.ts). */
import { randomUUID } from "node:crypto";
import type { ActorRefFrom, SnapshotFrom } from "xstate";
import type { SessionMachine } from "../actors/session/machine.ts";
import type { SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";

export type DeliveryMode = "poke" | "push";

/**
 * What a session needs from its connection, whatever the protocol (WebSocket, MQTT, a
 * server-sent-event stream). The session actor never sees it: the host's effects call it by
 * session id, and the transport's facts come back as the actor's events (see actors/session).
 */
export interface SessionTransport {
  send(text: string): boolean;
  bufferedAmount(): number;
  ping(): void;
  close(code: number, reason: string): void;
}

export interface Session {
  readonly id: string;
  readonly identity: Urn;
  readonly protocol: SessionProtocol;
  readonly mode: DeliveryMode;
  readonly connectedAt: number;
  readonly actor: ActorRefFrom<SessionMachine>;
  readonly transport: SessionTransport;
  /** Sends a frame, enforcing the send-buffer limit (a slow reader is closed, not buffered without bound). */
  send(text: string): void;
  isOnline(): boolean;
}

/**
 * A session whose connecting state is authenticating (`begin`): the edge answers its handshake with
 * the verdict (a WebSocket upgrade: 101 or the error; nothing is sent before it), then attaches
 * the transport once the connection is open.
 */
export interface PendingSession {
  readonly id: string;
  /** The verified principal; rejects with the verifier's error (or why the session ended first). */
  readonly verdict: Promise<Principal>;
  /** The connection is open: the session goes on to presence and online. */
  attach(transport: SessionTransport): Session;
  /** The handshake will not complete (refused after the verdict, or the client left): ends it. */
  abandon(): void;
}

/** The transport of a session not attached yet: sends nothing, holds nothing. */
export const DETACHED: SessionTransport = { send: () => false, bufferedAmount: () => 0, ping: () => {}, close: () => {} };

export type SessionActor = ActorRefFrom<SessionMachine>;

/**
 * A session id: a UUID as one flat string. Node's `randomUUID()` returns a rope of ~15 string
 * pieces, which V8 keeps as is while the id lives: ~420-490 B retained per id (measured), 56 B flat.
 */
export function newSessionId(): string {
  return Buffer.from(randomUUID(), "latin1").toString("latin1");
}

/** What every session of one host shares (one object per host, not per session). */
export interface HostShared {
  readonly maxBufferBytes: number;
  readonly metrics: Metrics;
  /** The session's actor is done: forget it. */
  ended(session: HostedSession): void;
}

/**
 * One connection's session. Memory matters here (one per idle connection), so opening a session
 * creates no closures: the methods live on the prototype, the per-host parts sit behind one `host`
 * pointer, and the session is itself the observer of its actor's snapshots (`next`). Under tsx
 * (esbuild `keepNames`) every arrow function stored in an object property is renamed with
 * `Object.defineProperty` each time it is created, which gives it its own hidden class and property
 * store: a per-session `{ next: (snapshot) => ... }` observer measured ~800 B, not ~100 B.
 */
export class HostedSession implements Session {
  readonly id: string;
  /** Set once authenticated (the empty string before). */
  identity: Urn = "" as Urn;
  readonly protocol: SessionProtocol;
  readonly mode: DeliveryMode;
  connectedAt: number;
  readonly actor: SessionActor;
  transport: SessionTransport = DETACHED;
  readonly host: HostShared;
  /** The state last counted in the sessions gauge ("" before the first snapshot). */
  counted = "";
  /** While connecting: the verifier for this session's credential, and the verdict's settlers. */
  pending: { authenticate: () => Promise<Principal>; principal?: Principal; resolve(p: Principal): void; reject(e: unknown): void } | undefined;

  constructor(host: HostShared, id: string, protocol: SessionProtocol, mode: DeliveryMode, actor: SessionActor) {
    this.host = host;
    this.id = id;
    this.protocol = protocol;
    this.mode = mode;
    this.connectedAt = Date.now();
    this.actor = actor;
  }

  send(text: string): void {
    if (!this.transport.send(text)) return;
    if (this.transport.bufferedAmount() > this.host.maxBufferBytes) this.actor.send({ type: "session.buffer.exceeded" });
  }

  isOnline(): boolean {
    return this.actor.getSnapshot().matches("online");
  }

  /** Observer of the actor (the host subscribes the session itself): the state gauge, and cleanup once done. */
  next(snapshot: SnapshotFrom<SessionMachine>): void {
    const { metrics } = this.host;
    const pending = this.pending;
    if (pending !== undefined && (snapshot.context.verified || snapshot.status === "done")) {
      this.pending = undefined;
      if (snapshot.context.verified && pending.principal !== undefined) {
        this.identity = pending.principal.identity;
        pending.resolve(pending.principal);
      } else pending.reject(snapshot.context.authError ?? endedBeforeVerdict(snapshot.context.closeCode));
    }
    const state = typeof snapshot.value === "string" ? snapshot.value : Object.keys(snapshot.value)[0];
    if (state === this.counted) return;
    if (this.counted) metrics.sessions.dec({ protocol: this.protocol, state: this.counted });
    if (snapshot.status === "done") {
      this.host.ended(this);
      metrics.sessionClosed(snapshot.context.closeCode);
      this.counted = "closed";
      return;
    }
    metrics.sessions.inc({ protocol: this.protocol, state });
    this.counted = state;
  }
}

/** The session ended while its credential was being verified (drain, auth timeout). */
export function endedBeforeVerdict(closeCode: number): RoutingError {
  return closeCode === 1001
    ? new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere")
    : new RoutingError("BACKEND_UNAVAILABLE", "authentication did not complete in time");
}
