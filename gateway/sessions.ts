import { sessionMachine, type SessionEvent } from "../actors/session/machine.ts";
import type { PresenceStore, SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { RoutingError } from "../core/errors.ts";
import { messageFrame, POKE_FRAME, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { LocalDelivery, Signal } from "../routing/signals.ts";
import { createSessionRunner } from "./session-runner.ts";
import {
  HostedSession,
  newSessionId,
  PendingHostedSession,
  type DeliveryMode,
  type HostShared,
  type PendingSession,
  type Session,
  type SessionTransport,
} from "./hosted-session.ts";

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

const HEARTBEAT: SessionEvent = { type: "session.heartbeat" };

/**
 * Maps live connections to sessions and identities to their sessions on this instance. Each
 * session is the session machine's snapshot, run by one runner for the host (session-runner.ts:
 * pure transitions, one timer queue; no actor per connection). The host provides the machine's
 * effects (verifier, presence, socket) once for all its sessions (a `provide()` clones the whole
 * machine: ~18 KB, so never per connection): an effect finds its session by `context.sessionId`
 * and answers with an event for it. It is also the LocalDelivery the signal bridge hands routed
 * messages to.
 */
export function createSessionHost(options: SessionHostOptions) {
  const { presence, metrics, instanceId } = options;
  /** Identity -> its online session here, or a set when it holds more than one. */
  const byIdentity = new Map<Urn, HostedSession | Set<HostedSession>>();
  /** Session id -> session, from begin() until its machine is done. */
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
    for (const session of all.values()) if (session.isOnline()) runner.send(session, HEARTBEAT);
  }
  function startBeat(): void {
    if (beat !== undefined) return;
    beat = setInterval(heartbeat, options.heartbeatMs);
    beat.unref();
  }

  const shared: HostShared = {
    maxBufferBytes: options.maxBufferBytes,
    metrics,
    send: (session, event) => runner.send(session, event),
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

  /** Sends the session of `sessionId` an event (none once it is gone). */
  function tell(sessionId: string, event: SessionEvent): void {
    const session = all.get(sessionId);
    if (session !== undefined) runner.send(session, event);
  }

  const machine = sessionMachine.provide({
    actions: {
      authenticate: ({ context }) => {
        const sessionId = context.sessionId;
        const pending = all.get(sessionId)?.pending;
        if (pending === undefined) return tell(sessionId, { type: "session.auth.rejected", error: new RoutingError("BACKEND_UNAVAILABLE", "session gone") });
        new Promise<Principal>((resolve) => resolve(pending.authenticate())).then(
          (principal) => {
            pending.principal = principal;
            const tokenTtlMs = principal.expiresAt === undefined ? undefined : principal.expiresAt - Date.now();
            tell(sessionId, { type: "session.auth.verified", identity: principal.identity, tokenTtlMs });
          },
          (error: unknown) => tell(sessionId, { type: "session.auth.rejected", error }),
        );
      },
      registerPresence: ({ context }, { identity }) => {
        const sessionId = context.sessionId;
        const connectedAt = all.get(sessionId)?.connectedAt ?? Date.now();
        presence.add(identity, { sessionId, instanceId, protocol: context.protocol, connectedAt }).then(
          () => tell(sessionId, { type: "session.presence.registered" }),
          (err: unknown) => {
            options.log.warn({ err, sessionId }, "presence write failed; closing session");
            tell(sessionId, { type: "session.presence.failed" });
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
      awaitFlush: ({ context }) => {
        if (all.get(context.sessionId)?.transport.bufferedAmount() === 0) tell(context.sessionId, { type: "session.flushed" });
      },
      closeSocket: ({ context }, params) => all.get(context.sessionId)?.transport.close(params.code, params.reason),
    },
  });
  const runner = createSessionRunner(machine, (err, session) => options.log.warn({ err, sessionId: (session as HostedSession).id }, "session effect failed"));

  /**
   * Starts a session whose `connecting` state runs `authenticate` (the verifier over the
   * connection's credential). Nothing is written (presence) and nothing delivered before `attach`.
   */
  function begin(protocol: SessionProtocol, mode: DeliveryMode, authenticate: () => Promise<Principal>): PendingSession {
    const id = newSessionId();
    const session = new HostedSession(shared, id, protocol, mode);
    const pending = new PendingHostedSession(session, authenticate);
    all.set(id, session);
    startBeat();
    runner.start(session, {
      sessionId: id,
      protocol,
      authTimeoutMs: options.authTimeoutMs,
      heartbeatMs: options.heartbeatMs,
      drainTimeoutMs: options.drainTimeoutMs,
    });
    return pending;
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
          if (session.snapshot.status === "done") return resolve();
          session.actor.subscribe({ complete: () => resolve() });
          runner.send(session, { type: "session.drain" });
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
