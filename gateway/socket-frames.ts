import type { TokenVerifier } from "../auth/verifier.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import { authedFrame, errorFrame, isClientFrame, messagesFrame, queuedMessageJson, refOf, sentFrame, type ClientFrame } from "../core/frames.ts";
import type { Ingress } from "../routing/ingress.ts";
import { STAMP_ALLOWANCE_BYTES, utf8Exceeds } from "../routing/ingress.ts";
import { DEFAULT_FETCH_LIMIT } from "./http-routes.ts";
import type { Session } from "./sessions.ts";
import { assertJsonDepth } from "../core/json-depth.ts";
import { createPreOnlineBuffer } from "./pre-online.ts";
import type { ErrorCode } from "../core/errors.ts";

/** A parsed frame that meant to send an envelope (`type: "send"`), valid or not. */
function isSendAttempt(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as { type?: unknown }).type === "send";
}

export interface FrameDeps {
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly maxEnvelopeBytes: number;
  /**
   * Counts an envelope refused here, before the ingress saw it (routing_envelopes_rejected_total):
   * a frame that is not JSON, one over the envelope limit, or a `send` frame that is not one.
   */
  readonly rejected?: (code: ErrorCode) => void;
  /** Checks the token of an `auth` frame (the same verifier as the upgrade's). */
  readonly verifier: TokenVerifier;
}

/**
 * Handles the client frames of one session (WebSocket; MQTT maps its topics onto the same calls).
 * Every bad frame is answered with an `error` frame carrying the frame's ref when it had one; the
 * session stays open. Only online sessions are served; a draining one answers SHUTTING_DOWN.
 */
export function createFrameHandler({ ingress, mailbox, maxEnvelopeBytes, rejected, verifier }: FrameDeps) {
  /**
   * Per session, the acks not yet durable. A fetch waits for the acks sent before it, so "ack then
   * fetch" never returns what was just acked; sends stay pipelined (their order is the bus's).
   */
  const pendingAcks = new WeakMap<Session, Promise<unknown>>();

  /** Answers a frame that failed with an `error` frame, carrying the frame's ref when it had one. */
  function fail(session: Session, ref: string | undefined, err: unknown): void {
    const error = asRoutingError(err);
    session.send(errorFrame(ref, error.code, error.message, error.retryAfterMs));
  }

  async function handle(session: Session, frame: ClientFrame): Promise<void> {
    try {
      await serve(session, frame);
    } catch (err) {
      fail(session, frame.ref, err);
    }
  }

  async function serve(session: Session, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case "send": {
        const messageId = await ingress.accept(frame.envelope, session.identity, "ws");
        session.send(sentFrame(frame.ref, messageId));
        return;
      }
      case "fetch": {
        await pendingAcks.get(session);
        const entries = await mailbox.fetch(session.identity, frame.limit ?? DEFAULT_FETCH_LIMIT);
        session.send(
          messagesFrame(
            frame.ref,
            entries.map((e) => queuedMessageJson(e.messageId, e.envelope, e.queuedAt)),
          ),
        );
        return;
      }
      case "ack": {
        const previous = pendingAcks.get(session) ?? Promise.resolve();
        const acked = previous.catch(() => {}).then(() => mailbox.ack(session.identity, frame.messageIds));
        pendingAcks.set(
          session,
          acked.catch(() => {}),
        );
        await acked;
        return;
      }
      case "auth": {
        // A token that fails, or names someone else, changes nothing: the old one's expiry still holds.
        const principal = await verifier.verify(frame.token);
        if (principal.identity !== session.identity) throw new RoutingError("FORBIDDEN", "the new token names another identity; the session keeps its token");
        const tokenTtlMs = principal.expiresAt === undefined ? undefined : principal.expiresAt - Date.now();
        session.actor.send({ type: "session.auth.refreshed", identity: principal.identity, tokenTtlMs });
        session.send(authedFrame(frame.ref, principal.expiresAt));
        return;
      }
    }
  }

  // Checks run synchronously and `handle` answers its own failures: a frame costs one promise
  // chain and no closures (every message passes here).
  const preOnline = createPreOnlineBuffer((session, text) => onText(session, text));
  return onText;
  function onText(session: Session, text: string | null): void {
    // Sent between the 101 and online: served in order once online (pre-online.ts, issue 14).
    if (preOnline(session, text)) return;
    let ref: string | undefined;
    let frame: ClientFrame;
    let value: unknown;
    try {
      if (text === null) throw new RoutingError("INVALID_FRAME", "frames are JSON text; binary frames are not accepted");
      assertJsonDepth(text);
      try {
        value = JSON.parse(text);
      } catch {
        throw new RoutingError("INVALID_JSON", "frame is not valid JSON");
      }
      ref = refOf(value);
      // The engine's hard cap bounds what gets parsed; this is the contract's limit, answered with the ref.
      if (utf8Exceeds(text, maxEnvelopeBytes + STAMP_ALLOWANCE_BYTES)) {
        throw new RoutingError("ENVELOPE_TOO_LARGE", `frame exceeds the envelope limit of ${maxEnvelopeBytes} bytes`);
      }
      if (!isClientFrame(value))
        throw new RoutingError("INVALID_FRAME", "frame must be send {ref, envelope}, fetch {ref, limit?}, ack {messageIds} or auth {ref, token}");
      if (!session.isOnline()) throw new RoutingError("SHUTTING_DOWN", "this session is closing");
      frame = value;
    } catch (err) {
      const code = asRoutingError(err).code;
      if (code === "INVALID_JSON" || code === "ENVELOPE_TOO_LARGE" || (code === "INVALID_FRAME" && isSendAttempt(value))) rejected?.(code);
      fail(session, ref, err);
      return;
    }
    void handle(session, frame);
  }
}
