/** One connection's session object, its transport seam and the types the edges share (the host is sessions.ts). */
import { randomUUID } from "node:crypto";
import type { SessionEvent } from "../actors/session/machine.ts";
import type { SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { Delay, RunnableSession, SessionSnapshot } from "./session-runner.ts";

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
  /** The session machine's view of this session: its snapshot (state, context), its events. */
  readonly actor: SessionActor;
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

export type SessionObserver = ((snapshot: SessionSnapshot) => void) | { next?(snapshot: SessionSnapshot): void; complete?(): void };

/**
 * A session as an actor to its edges: they send it the transport's facts and read or watch its
 * state, as they would a live XState actor's (`send`, `getSnapshot`, `subscribe`); the host runs
 * the machine for it (session-runner.ts).
 */
export interface SessionActor {
  send(event: SessionEvent): void;
  getSnapshot(): SessionSnapshot;
  /** Every new snapshot, then `complete` once the session is done. */
  subscribe(observer: SessionObserver): { unsubscribe(): void };
}

/** A session's SessionActor: made when asked for (a pong, a drain), so an idle session holds none. */
class SessionRef implements SessionActor {
  readonly #session: HostedSession;
  constructor(session: HostedSession) {
    this.#session = session;
  }
  send(event: SessionEvent): void {
    this.#session.host.send(this.#session, event);
  }
  getSnapshot(): SessionSnapshot {
    return this.#session.snapshot;
  }
  subscribe(observer: SessionObserver): { unsubscribe(): void } {
    const session = this.#session;
    // As an actor does: a finished one completes the observer at once.
    if (session.snapshot.status !== "active") {
      if (typeof observer !== "function") observer.complete?.();
      return { unsubscribe() {} };
    }
    (session.observers ??= []).push(observer);
    return {
      unsubscribe() {
        const i = session.observers?.indexOf(observer) ?? -1;
        if (i >= 0) session.observers?.splice(i, 1);
        if (session.observers?.length === 0) session.observers = undefined;
      },
    };
  }
}

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
  /** Sends the session machine an event for this session. */
  send(session: HostedSession, event: SessionEvent): void;
  /** The session is done: forget it. */
  ended(session: HostedSession): void;
}

/**
 * One connection's session. Memory matters here (one per idle connection), so opening a session
 * creates no closures and no actor: the session machine's snapshot sits in `snapshot` (the host's
 * runner advances it), the methods live on the prototype, the per-host parts sit behind one `host`
 * pointer, and the session is itself told each new snapshot (`next`). Under tsx
 * (esbuild `keepNames`) every arrow function stored in an object property is renamed with
 * `Object.defineProperty` each time it is created, which gives it its own hidden class and property
 * store: a per-session `{ next: (snapshot) => ... }` observer measured ~800 B, not ~100 B.
 */
export class HostedSession implements Session, RunnableSession {
  readonly id: string;
  /** Set once authenticated (the empty string before). */
  identity: Urn = "" as Urn;
  readonly protocol: SessionProtocol;
  readonly mode: DeliveryMode;
  connectedAt: number;
  /** The session machine's current snapshot (set by the runner's start). */
  snapshot!: SessionSnapshot;
  /** Its pending delayed events (the runner's). */
  delays: Delay | undefined = undefined;
  /** Who watches its snapshots (a drain, frames held before online); none while idle. */
  observers: SessionObserver[] | undefined = undefined;
  transport: SessionTransport = DETACHED;
  readonly host: HostShared;
  /** The state last counted in the sessions gauge ("" before the first snapshot). */
  counted = "";
  /** While connecting: the verifier for this session's credential, and the verdict's settlers. */
  pending: { authenticate: () => Promise<Principal>; principal?: Principal; resolve(p: Principal): void; reject(e: unknown): void } | undefined;

  constructor(host: HostShared, id: string, protocol: SessionProtocol, mode: DeliveryMode) {
    this.host = host;
    this.id = id;
    this.protocol = protocol;
    this.mode = mode;
    this.connectedAt = Date.now();
  }

  get actor(): SessionActor {
    return new SessionRef(this);
  }

  send(text: string): void {
    if (!this.transport.send(text)) return;
    if (this.transport.bufferedAmount() > this.host.maxBufferBytes) this.host.send(this, { type: "session.buffer.exceeded" });
  }

  isOnline(): boolean {
    return this.snapshot.value === "online";
  }

  /** Each new snapshot: the verdict, the state gauge, cleanup once done, then the observers. */
  next(snapshot: SessionSnapshot): void {
    this.settle(snapshot);
    const observers = this.observers;
    if (observers === undefined) return;
    for (const observer of [...observers]) {
      if (typeof observer === "function") observer(snapshot);
      else observer.next?.(snapshot);
      if (snapshot.status === "done" && typeof observer !== "function") observer.complete?.();
    }
    if (snapshot.status === "done") this.observers = undefined;
  }

  private settle(snapshot: SessionSnapshot): void {
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

/**
 * A session being verified, as begin() hands it to the edge (a class: no closures over the
 * credential, and the edge drops it once the transport is attached).
 */
export class PendingHostedSession implements PendingSession {
  readonly #session: HostedSession;
  readonly verdict: Promise<Principal>;

  constructor(session: HostedSession, authenticate: () => Promise<Principal>) {
    this.#session = session;
    this.verdict = new Promise<Principal>((resolve, reject) => {
      session.pending = { authenticate, resolve, reject };
    });
  }

  get id(): string {
    return this.#session.id;
  }

  attach(transport: SessionTransport): Session {
    const session = this.#session;
    session.transport = transport;
    session.connectedAt = Date.now();
    const snapshot = session.snapshot;
    // Ended between the verdict and the open (a drain): the connection closes as the session did.
    if (snapshot.status === "done") transport.close(snapshot.context.closeCode, snapshot.context.closeReason);
    else session.host.send(session, { type: "session.transport.attached" });
    return session;
  }

  /** Bound (the edge passes it on as a callback); the pending session lives only until attached. */
  readonly abandon = (): void => {
    this.#session.host.send(this.#session, { type: "session.socket.closed", code: 1006 });
  };
}

/** The session ended while its credential was being verified (drain, auth timeout). */
export function endedBeforeVerdict(closeCode: number): RoutingError {
  return closeCode === 1001
    ? new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere")
    : new RoutingError("BACKEND_UNAVAILABLE", "authentication did not complete in time");
}
