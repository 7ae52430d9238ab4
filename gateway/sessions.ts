import { randomUUID } from "node:crypto";
import { createActor, type ActorRefFrom } from "xstate";
import { sessionMachine, type SessionMachine } from "../actors/session/machine.ts";
import type { PresenceStore, SessionProtocol } from "../backends/presence-store.ts";
import type { Principal } from "../auth/verifier.ts";
import { messageFrame, POKE_FRAME, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { LocalDelivery, Signal } from "../routing/signals.ts";

export type DeliveryMode = "poke" | "push";

/** What a session needs from its connection, whatever the protocol (WebSocket, MQTT). */
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
 * It provides the session machine's effects (presence, socket) and is the LocalDelivery the
 * signal bridge hands routed messages to.
 */
export function createSessionHost(options: SessionHostOptions) {
  const { presence, metrics, instanceId } = options;
  const byIdentity = new Map<Urn, Set<Session>>();
  const all = new Set<Session>();

  function open(transport: SessionTransport, protocol: SessionProtocol, mode: DeliveryMode, principal: Principal): Session {
    const id = randomUUID();
    const connectedAt = Date.now();
    const identity = principal.identity;
    let session: Session;
    const machine = sessionMachine.provide({
      actions: {
        registerPresence: () => {
          presence.add(identity, { sessionId: id, instanceId, protocol, connectedAt }).then(
            () => actor.send({ type: "session.presence.registered" }),
            (err: unknown) => {
              options.log.warn({ err, sessionId: id }, "presence write failed; closing session");
              actor.send({ type: "session.presence.failed" });
            },
          );
        },
        unregisterPresence: () => {
          presence.remove(identity, id).catch((err: unknown) => options.log.warn({ err, sessionId: id }, "presence removal failed; it expires with the TTL"));
        },
        goOnline: () => {
          let set = byIdentity.get(identity);
          if (!set) byIdentity.set(identity, (set = new Set()));
          set.add(session);
        },
        sendPing: () => transport.ping(),
        awaitFlush: () => {
          if (transport.bufferedAmount() === 0) actor.send({ type: "session.flushed" });
        },
        closeSocket: (_, params) => transport.close(params.code, params.reason),
      },
    });
    const actor = createActor(machine, {
      id: `session-${id}`,
      input: { sessionId: id, protocol, authTimeoutMs: options.authTimeoutMs, heartbeatMs: options.heartbeatMs, drainTimeoutMs: options.drainTimeoutMs },
    });
    session = {
      id,
      identity,
      protocol,
      mode,
      connectedAt,
      actor,
      transport,
      send(text) {
        if (!transport.send(text)) return;
        if (transport.bufferedAmount() > options.maxBufferBytes) actor.send({ type: "session.buffer.exceeded" });
      },
      isOnline: () => actor.getSnapshot().matches("online"),
    };
    all.add(session);
    let lastState = "";
    actor.subscribe({
      next: (snapshot) => {
        const state = typeof snapshot.value === "string" ? snapshot.value : Object.keys(snapshot.value)[0];
        if (state === lastState) return;
        if (lastState) metrics.sessions.dec({ protocol, state: lastState });
        if (snapshot.status === "done") {
          all.delete(session);
          const set = byIdentity.get(identity);
          set?.delete(session);
          if (set?.size === 0) byIdentity.delete(identity);
          metrics.sessionClosed(snapshot.context.closeCode);
          lastState = "closed";
          return;
        }
        metrics.sessions.inc({ protocol, state });
        lastState = state;
      },
    });
    actor.start();
    const ttl = principal.expiresAt === undefined ? undefined : principal.expiresAt - Date.now();
    actor.send({ type: "session.auth.accepted", identity, tokenTtlMs: ttl });
    return session;
  }

  const deliver: LocalDelivery["deliver"] = (recipient: Urn, signal: Signal) => {
    const sessions = byIdentity.get(recipient);
    if (!sessions) return 0;
    const { record } = signal;
    let messageText: string | undefined;
    let reached = 0;
    for (const session of sessions) {
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
    const waits = [...all].map(
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
    open,
    deliver,
    drainAll,
    sessions: (urn?: Urn): Session[] => (urn ? [...(byIdentity.get(urn) ?? [])] : [...all]),
    count: () => all.size,
  };
}

export type SessionHost = ReturnType<typeof createSessionHost>;
