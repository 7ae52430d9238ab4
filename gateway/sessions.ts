import { createActor, fromPromise } from "xstate";
import { sessionMachine } from "../actors/session/machine.ts";
import type { PresenceStore, SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { RoutingError } from "../core/errors.ts";
import { messageFrame, POKE_FRAME, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { LocalDelivery, Signal } from "../routing/signals.ts";
import { HostedSession, newSessionId, type DeliveryMode, type HostShared, type PendingSession, type Session, type SessionTransport } from "./hosted-session.ts";

export type { DeliveryMode, PendingSession, Session, SessionTransport } from "./hosted-session.ts";

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
        presence
          .remove(context.identity as Urn, sessionId)
          .catch((err: unknown) => options.log.warn({ err, sessionId }, "presence removal failed; it expires with the TTL"));
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
