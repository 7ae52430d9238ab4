import { assign, cancel, enqueueActions, raise, setup } from "xstate";
import { CLOSE } from "../../core/close-codes.ts";
import type { Urn } from "../../core/urn.ts";

/**
 * The session of one client connection (WebSocket, MQTT, SSE). Pure: every effect (verifier,
 * presence, socket) is an action the hosting gateway provides with `machine.provide()`, once per
 * host, not per connection (`provide()` clones the machine, ~18 KB): an effect knows its session by
 * `context.sessionId` and answers with an event for that session. The host feeds it the facts
 * (verdict, presence written, pong seen, buffer over its limit, socket gone, shutdown). It runs as
 * a live actor (the tests) or, in the gateway, as a snapshot per session advanced by pure
 * transitions, its delays on one timer queue per host (gateway/session-runner.ts): no actor,
 * actor system or Node timer per idle connection.
 *
 *   connecting -> authenticated -> online -> draining -> closed
 *        \______________\______________\__________________/  (timeouts, failures, socket closed)
 *
 * Authentication runs in `connecting`: its entry starts `authenticate` (the host's verifier for the
 * session's credential, an effect like the others), which answers `session.auth.verified` or
 * `session.auth.rejected`; a rejection ends the session with its close and keeps the error in
 * `authError`, which the host answers with (HTTP 401 before any 101, CONNACK 4). An effect rather
 * than an invoked promise actor: the machine has no children, so a host may run it as pure
 * transitions over a snapshot (`machine.transition`, gateway/session-runner.ts), no actor per session.
 * The session leaves `connecting` once the verdict is in AND the transport is attached
 * (`session.transport.attached`): a WebSocket upgrade waits for the verdict before its 101.
 *
 * The transport seam: the machine never sees a socket. Effects name a transport by session id
 * (`closeSocket`, `sendPing`, `awaitFlush`), and the host turns transport facts into events
 * (`session.transport.attached`, `.pong`, `.flushed`, `.buffer.exceeded`, `.socket.closed`), so a
 * WebSocket, an MQTT client or a server-sent-event stream can each sit behind the same actor.
 */
export interface SessionInput {
  readonly sessionId: string;
  readonly protocol: "ws" | "mqtt" | "sse";
  readonly authTimeoutMs: number;
  /** The host's heartbeat interval (it sends `session.heartbeat` at this pace to every online session). */
  readonly heartbeatMs: number;
  readonly drainTimeoutMs: number;
}

export interface SessionContext extends SessionInput {
  identity: Urn | undefined;
  /** The verifier's verdict is in (connecting waits for it and for the transport). */
  verified: boolean;
  transportAttached: boolean;
  /** Why authentication failed (the verifier's error), for the host's answer. */
  authError: unknown;
  /** Milliseconds from authentication until the token expires (undefined: no expiry). */
  tokenTtlMs: number | undefined;
  /** Pings sent since the last pong. */
  unansweredPings: number;
  presenceRegistered: boolean;
  socketClosed: boolean;
  closeCode: number;
  closeReason: string;
}

export type SessionEvent =
  /** The verifier's verdict for the credential (connecting still waits for the transport). */
  | { type: "session.auth.verified"; identity: Urn; tokenTtlMs?: number }
  | { type: "session.auth.accepted"; identity: Urn; tokenTtlMs?: number }
  | { type: "session.auth.rejected"; error?: unknown }
  /** The host attached the session's transport (the WebSocket opened after its 101, the MQTT subscription). */
  | { type: "session.transport.attached" }
  /**
   * A new token for the same identity was verified (the WebSocket `auth` frame): the expiry timer
   * restarts from its lifetime. The host checks the identity before sending it; the machine ignores
   * one for another identity all the same, so the old token's expiry still holds.
   */
  | { type: "session.auth.refreshed"; identity: Urn; tokenTtlMs?: number }
  /** Raised by the machine itself when the token's lifetime ends (closes with 4002). */
  | { type: "session.token.expired" }
  | { type: "session.presence.registered" }
  | { type: "session.presence.failed" }
  /** One beat of the host's shared heartbeat interval (every `heartbeatMs`, one interval for all sessions). */
  | { type: "session.heartbeat" }
  | { type: "session.pong" }
  | { type: "session.buffer.exceeded" }
  | { type: "session.flushed" }
  | { type: "session.drain" }
  | { type: "session.socket.closed"; code: number };

/** setTimeout's ceiling; longer token lifetimes simply never expire the session. */
const MAX_DELAY_MS = 2_147_483_647;
/** A session whose pings go unanswered this many intervals is dead. */
export const MAX_UNANSWERED_PINGS = 2;

/** The token-expiry timer's id: a refresh cancels it and starts it again. */
const TOKEN_EXPIRY = "tokenExpiry";

export const sessionMachine = setup({
  types: {
    input: {} as SessionInput,
    context: {} as SessionContext,
    events: {} as SessionEvent,
  },
  actions: {
    /**
     * Verify the session's credential: the host answers session.auth.verified or .rejected. None
     * by default: a verdict never comes (the auth timeout closes), unless fed as events.
     */
    authenticate: () => {},
    /** Remember why the session ends; `closed` closes the socket with it. */
    setClose: assign((_, params: { code: number; reason: string }) => ({ closeCode: params.code, closeReason: params.reason })),
    /** Write presence; the host answers with session.presence.registered or .failed. */
    registerPresence: (_: unknown, _params: { identity: Urn }) => {},
    unregisterPresence: () => {},
    /** The session may now receive deliveries (joins the local session map). */
    goOnline: () => {},
    sendPing: () => {},
    /** The host answers session.flushed once the send buffer is empty (at once if it already is). */
    awaitFlush: () => {},
    closeSocket: (_: unknown, _params: { code: number; reason: string }) => {},
    /** Starts the token-expiry timer: raises session.token.expired after tokenTtlMs (guarded by tokenExpires). */
    scheduleTokenExpiry: raise(
      { type: "session.token.expired" },
      { id: TOKEN_EXPIRY, delay: ({ context }) => Math.max(0, context.tokenTtlMs ?? MAX_DELAY_MS) },
    ),
    cancelTokenExpiry: cancel(TOKEN_EXPIRY),
  },
  delays: {
    authTimeout: ({ context }) => context.authTimeoutMs,
    drainTimeout: ({ context }) => context.drainTimeoutMs,
  },
  guards: {
    pingsUnanswered: ({ context }) => context.unansweredPings >= MAX_UNANSWERED_PINGS,
    tokenExpires: ({ context }) => context.tokenTtlMs !== undefined && context.tokenTtlMs <= MAX_DELAY_MS,
    sameIdentity: ({ context, event }) => event.type === "session.auth.refreshed" && event.identity === context.identity,
    /** The verdict is in (so the transport attaching now completes authentication). */
    verified: ({ context }) => context.verified,
    /** The transport is attached (so the verdict arriving now completes authentication). */
    transportAttached: ({ context }) => context.transportAttached,
  },
}).createMachine({
  id: "session",
  context: ({ input }) => ({
    ...input,
    identity: undefined,
    verified: false,
    transportAttached: false,
    authError: undefined,
    tokenTtlMs: undefined,
    unansweredPings: 0,
    presenceRegistered: false,
    socketClosed: false,
    closeCode: CLOSE.NORMAL,
    closeReason: "",
  }),
  initial: "connecting",
  on: {
    "session.socket.closed": { target: ".closed", actions: assign({ socketClosed: true, closeCode: ({ event }) => event.code }) },
  },
  states: {
    connecting: {
      entry: "authenticate",
      after: { authTimeout: { target: "closed", actions: { type: "setClose", params: { code: CLOSE.AUTH_TIMEOUT, reason: "authentication timeout" } } } },
      // Whichever of the verdict and the transport comes second moves on to `authenticated`. Guarded
      // transitions rather than an eventless one (`always`): one microstep per event instead of two,
      // which in XState 5 is one snapshot clone and its state-node sets fewer per handshake.
      on: {
        "session.transport.attached": [
          { guard: "verified", target: "authenticated", actions: assign({ transportAttached: true }) },
          { actions: assign({ transportAttached: true }) },
        ],
        "session.auth.verified": [
          {
            guard: "transportAttached",
            target: "authenticated",
            actions: assign({ verified: true, identity: ({ event }) => event.identity, tokenTtlMs: ({ event }) => event.tokenTtlMs }),
          },
          { actions: assign({ verified: true, identity: ({ event }) => event.identity, tokenTtlMs: ({ event }) => event.tokenTtlMs }) },
        ],
        /** A verdict reached outside the machine (kept for hosts and tests that feed it). */
        "session.auth.accepted": {
          target: "authenticated",
          actions: assign({ verified: true, transportAttached: true, identity: ({ event }) => event.identity, tokenTtlMs: ({ event }) => event.tokenTtlMs }),
        },
        "session.auth.rejected": {
          target: "closed",
          actions: [assign({ authError: ({ event }) => event.error }), { type: "setClose", params: { code: CLOSE.NORMAL, reason: "authentication failed" } }],
        },
        "session.drain": { target: "closed", actions: { type: "setClose", params: { code: CLOSE.GOING_AWAY, reason: "shutting down" } } },
      },
    },
    authenticated: {
      entry: { type: "registerPresence", params: ({ context }) => ({ identity: context.identity as Urn }) },
      after: { authTimeout: { target: "closed", actions: { type: "setClose", params: { code: CLOSE.AUTH_TIMEOUT, reason: "presence timeout" } } } },
      on: {
        "session.presence.registered": { target: "online", actions: assign({ presenceRegistered: true }) },
        "session.presence.failed": {
          target: "closed",
          actions: { type: "setClose", params: { code: CLOSE.BACKEND_UNAVAILABLE, reason: "presence unavailable" } },
        },
        // Presence may still be written after this; closed unregisters it whatever the order.
        "session.drain": {
          target: "closed",
          actions: [assign({ presenceRegistered: true }), { type: "setClose", params: { code: CLOSE.GOING_AWAY, reason: "shutting down" } }],
        },
      },
    },
    online: {
      // (Re)starting the expiry timer: none without an expiry, or past setTimeout's ceiling. A delayed
      // self-event rather than an `after`, so a refresh restarts it without re-entering `online`
      // (which would re-run goOnline).
      entry: ["goOnline", enqueueActions(({ check, enqueue }) => check("tokenExpires") && enqueue("scheduleTokenExpiry"))],
      // Leaving online (drain) stops the expiry clock, as an `after` on this state would.
      exit: "cancelTokenExpiry",
      on: {
        // The host's one shared heartbeat (not a timer per session): ping, or close a peer that
        // left two pings unanswered.
        "session.heartbeat": [
          { guard: "pingsUnanswered", target: "closed", actions: { type: "setClose", params: { code: CLOSE.HEARTBEAT_TIMEOUT, reason: "heartbeat timeout" } } },
          { actions: ["sendPing", assign({ unansweredPings: ({ context }) => context.unansweredPings + 1 })] },
        ],
        "session.token.expired": { target: "closed", actions: { type: "setClose", params: { code: CLOSE.TOKEN_EXPIRED, reason: "token expired" } } },
        "session.auth.refreshed": {
          guard: "sameIdentity",
          actions: [
            assign({ tokenTtlMs: ({ event }) => event.tokenTtlMs }),
            "cancelTokenExpiry",
            enqueueActions(({ check, enqueue }) => check("tokenExpires") && enqueue("scheduleTokenExpiry")),
          ],
        },
        "session.pong": { actions: assign({ unansweredPings: 0 }) },
        "session.buffer.exceeded": {
          target: "closed",
          actions: { type: "setClose", params: { code: CLOSE.SLOW_CONSUMER, reason: "send buffer limit exceeded" } },
        },
        "session.drain": "draining",
      },
    },
    draining: {
      entry: "awaitFlush",
      after: { drainTimeout: { target: "closed", actions: { type: "setClose", params: { code: CLOSE.GOING_AWAY, reason: "shutting down" } } } },
      on: {
        "session.flushed": { target: "closed", actions: { type: "setClose", params: { code: CLOSE.GOING_AWAY, reason: "shutting down" } } },
        "session.buffer.exceeded": {
          target: "closed",
          actions: { type: "setClose", params: { code: CLOSE.SLOW_CONSUMER, reason: "send buffer limit exceeded" } },
        },
      },
    },
    closed: {
      type: "final",
      entry: enqueueActions(({ context, enqueue }) => {
        if (context.presenceRegistered) enqueue("unregisterPresence");
        if (!context.socketClosed) enqueue({ type: "closeSocket", params: { code: context.closeCode, reason: context.closeReason } });
      }),
    },
  },
});

export type SessionMachine = typeof sessionMachine;
