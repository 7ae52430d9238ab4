import { randomUUID } from "node:crypto";
import { createActor, fromPromise, type ActorRefFrom, type SnapshotFrom } from "xstate";
import { sessionMachine, type SessionMachine } from "../actors/session/machine.ts";
import type { PresenceStore, SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { RoutingError } from "../core/errors.ts";
import { messageFrame, POKE_FRAME, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { LocalDelivery, Signal } from "../routing/signals.ts";

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
const DETACHED: SessionTransport = { send: () => false, bufferedAmount: () => 0, ping: () => {}, close: () => {} };

export interface SessionHostOptions {
  readonly instanceId: string;
  readonly presence: PresenceStore;
  readonly metrics: Metrics;
  readonly maxBufferBytes: number;
  readonly authTimeoutMs: number;
  readonly heartbeatMs: number;
  readonly drainTimeoutMs: number;
  readonly log: { warn(obj: object, msg: string): void };
}

type SessionActor = ActorRefFrom<SessionMachine>;

/**
 * A session id: a UUID as one flat string. Node's `randomUUID()` returns a rope of ~15 string
 * pieces, which V8 keeps as is while the id lives: ~420-490 B retained per id (measured), 56 B flat.
 */
function newSessionId(): string {
  return Buffer.from(randomUUID(), "latin1").toString("latin1");
}

/** What every session of one host shares (one object per host, not per session). */
interface HostShared {
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
class HostedSession implements Session {
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
      }
      else pending.reject(snapshot.context.authError ?? endedBeforeVerdict(snapshot.context.closeCode));
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
function endedBeforeVerdict(closeCode: number): RoutingError {
  return closeCode === 1001
    ? new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere")
    : new RoutingError("BACKEND_UNAVAILABLE", "authentication did not complete in time");
}

/**
 * Maps live connections to session actors and identities to their sessions on this instance.
 * It provides the session machine's effects (presence, socket) once for all its sessions (a
 * `provide()` clones the whole machine: ~18 KB, so never per connection): an effect finds its
 * session by the actor's `context.sessionId` and answers through `self`. It is also the
 * LocalDelivery the signal bridge hands routed messages to.
 */
export function createSessionHost(options: SessionHostOptions) {
  const { presence, metrics, instanceId } = options;
  /** Identity -> its online session here, or a set when it holds more than one. */
  const byIdentity = new Map<Urn, HostedSession | Set<HostedSession>>();
  /** Session id -> session, from open() until its actor is done. */
  const all = new Map<string, HostedSession>();

  function goOnline(session: HostedSession): void {
    const held = byIdentity.get(session.identity);
    if (held === undefined) byIdentity.set(session.identity, session);
    else if (held instanceof Set) held.add(session);
    else if (held !== session) byIdentity.set(session.identity, new Set([held, session]));
  }

  /*
   * Liveness: one interval for all sessions (the heartbeat pattern the `ws` documentation gives),
   * not a timer per session. Each beat tells every online session `session.heartbeat`; its actor
   * pings through its transport (a WebSocket ping, an SSE comment; MQTT answers at once: aedes
   * enforces the keepalive) and closes with 4000 after two unanswered. Runs while sessions exist.
   */
  let beat: NodeJS.Timeout | undefined;
  function heartbeat(): void {
    for (const session of all.values()) if (session.isOnline()) session.actor.send({ type: "session.heartbeat" });
  }
  function startBeat(): void {
    if (beat !== undefined) return;
    beat = setInterval(heartbeat, options.heartbeatMs);
    beat.unref();
  }

  const shared: HostShared = {
    maxBufferBytes: options.maxBufferBytes,
    metrics,
    ended(session) {
      all.delete(session.id);
      if (all.size === 0 && beat !== undefined) {
        clearInterval(beat);
        beat = undefined;
      }
      const held = byIdentity.get(session.identity);
      if (held === session) byIdentity.delete(session.identity);
      else if (held instanceof Set && held.delete(session)) {
        if (held.size === 1) byIdentity.set(session.identity, held.values().next().value as HostedSession);
        else if (held.size === 0) byIdentity.delete(session.identity);
      }
    },
  };

  const machine = sessionMachine.provide({
    actors: {
      authenticate: fromPromise(async ({ input }) => {
        const pending = all.get(input.sessionId)?.pending;
        if (pending === undefined) throw new RoutingError("BACKEND_UNAVAILABLE", "session gone");
        const principal = await pending.authenticate();
        pending.principal = principal;
        return { identity: principal.identity, tokenTtlMs: principal.expiresAt === undefined ? undefined : principal.expiresAt - Date.now() };
      }),
    },
    actions: {
      registerPresence: ({ context, self }, { identity }) => {
        const sessionId = context.sessionId;
        const connectedAt = all.get(sessionId)?.connectedAt ?? Date.now();
        presence.add(identity, { sessionId, instanceId, protocol: context.protocol, connectedAt }).then(
          () => self.send({ type: "session.presence.registered" }),
          (err: unknown) => {
            options.log.warn({ err, sessionId }, "presence write failed; closing session");
            self.send({ type: "session.presence.failed" });
          },
        );
      },
      unregisterPresence: ({ context }) => {
        const sessionId = context.sessionId;
        presence.remove(context.identity as Urn, sessionId).catch((err: unknown) => options.log.warn({ err, sessionId }, "presence removal failed; it expires with the TTL"));
      },
      goOnline: ({ context }) => {
        const session = all.get(context.sessionId);
        if (session !== undefined) goOnline(session);
      },
      sendPing: ({ context }) => all.get(context.sessionId)?.transport.ping(),
      awaitFlush: ({ context, self }) => {
        if (all.get(context.sessionId)?.transport.bufferedAmount() === 0) self.send({ type: "session.flushed" });
      },
      closeSocket: ({ context }, params) => all.get(context.sessionId)?.transport.close(params.code, params.reason),
    },
  });

  /**
   * Starts a session whose `connecting` state runs `authenticate` (the verifier over the
   * connection's credential). Nothing is written (presence) and nothing delivered before `attach`.
   */
  function begin(protocol: SessionProtocol, mode: DeliveryMode, authenticate: () => Promise<Principal>): PendingSession {
    const id = newSessionId();
    const actor = createActor(machine, {
      input: { sessionId: id, protocol, authTimeoutMs: options.authTimeoutMs, heartbeatMs: options.heartbeatMs, drainTimeoutMs: options.drainTimeoutMs },
    });
    const session = new HostedSession(shared, id, protocol, mode, actor);
    const verdict = new Promise<Principal>((resolve, reject) => {
      session.pending = { authenticate, resolve, reject };
    });
    all.set(id, session);
    startBeat();
    actor.subscribe(session);
    actor.start();
    return {
      id,
      verdict,
      attach(transport) {
        session.transport = transport;
        session.connectedAt = Date.now();
        const snapshot = actor.getSnapshot();
        // Ended between the verdict and the open (a drain): the connection closes as the session did.
        if (snapshot.status === "done") transport.close(snapshot.context.closeCode, snapshot.context.closeReason);
        else actor.send({ type: "session.transport.attached" });
        return session;
      },
      abandon() {
        if (actor.getSnapshot().status === "active") actor.send({ type: "session.socket.closed", code: 1006 });
      },
    };
  }

  /**
   * A session over a connection whose credential was verified by its protocol's own handshake
   * (MQTT's CONNECT, answered with a CONNACK code before any session exists): the session's
   * authentication takes that verdict.
   */
  function open(transport: SessionTransport, protocol: SessionProtocol, mode: DeliveryMode, principal: Principal): Session {
    const pending = begin(protocol, mode, () => Promise.resolve(principal));
    pending.verdict.catch(() => {});
    return pending.attach(transport);
  }

  const deliver: LocalDelivery["deliver"] = (recipient: Urn, signal: Signal) => {
    const held = byIdentity.get(recipient);
    if (held === undefined) return 0;
    const { record } = signal;
    let messageText: string | undefined;
    let reached = 0;
    for (const session of held instanceof Set ? held : [held]) {
      if (!session.isOnline()) continue;
      if (record.isEphemeral || session.mode === "push") {
        messageText ??= messageFrame(queuedMessageJson(record.messageId, record.envelope, signal.queuedAt));
        session.send(messageText);
      } else {
        session.send(POKE_FRAME);
      }
      reached++;
    }
    return reached;
  };

  /** Drain every session (close 1001 after their buffers flush); resolves when all are closed or the timeout passes. */
  async function drainAll(timeoutMs: number): Promise<void> {
    const waits = [...all.values()].map(
      (session) =>
        new Promise<void>((resolve) => {
          if (session.actor.getSnapshot().status === "done") return resolve();
          session.actor.subscribe({ complete: () => resolve() });
          session.actor.send({ type: "session.drain" });
        }),
    );
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  return {
    begin,
    open,
    deliver,
    drainAll,
    sessions: (urn?: Urn): Session[] => {
      if (urn === undefined) return [...all.values()].filter((session) => session.identity !== "");
      const held = byIdentity.get(urn);
      return held === undefined ? [] : held instanceof Set ? [...held] : [held];
    },
    count: () => all.size,
    heartbeatMs: options.heartbeatMs,
  };
}

export type SessionHost = ReturnType<typeof createSessionHost>;
