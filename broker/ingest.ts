import type { Mailbox } from "../backends/mailbox.ts";
import { MESSAGE_ID_PATTERN, parseJson } from "../core/envelope.ts";
import { asRoutingError, RoutingError, type ErrorCode } from "../core/errors.ts";
import { errorFrame, isAckBody } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Ingress } from "../routing/ingress.ts";

/**
 * What became of one MQTT publish on the ingest or ack topic:
 * - `accepted`: durable (the bus took the envelope, or the mailbox the ack): acknowledge it;
 * - `rejected`: permanently refused (malformed, too large, sender mismatch): acknowledge it too, so
 *   the client does not resend what can never succeed, and publish `frame` (an `error` frame) to
 *   the client's receive topic. This is MQTT 3.1.1's form of a negative PUBACK.
 * - `withheld`: refused for now (MAILBOX_FULL): publish `frame` (an `error` frame with
 *   `retryAfterMs`) to the receive topic and send NO acknowledgement, keeping the connection: the
 *   message stays in the client's in-flight window and is resent on its next connection (MQTT
 *   3.1.1 has no negative PUBACK; MQTT 5's would be 0x97). See docs/data-lifecycle.md.
 * A retryable failure (bus or store unavailable, shutting down) rejects instead: then nothing may
 * be acknowledged, and the caller drops the connection so the client resends.
 */
export type PublishOutcome =
  { readonly kind: "accepted" } | { readonly kind: "rejected"; readonly frame: string } | { readonly kind: "withheld"; readonly frame: string };

export interface MqttIngestOptions {
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

const ACCEPTED: PublishOutcome = { kind: "accepted" };
/** Longest single wait of a held publish before it is tried again. */
const HOLD_STEP_MS = 1000;

/** Which refusals a publish waits out instead of answering, and for how long (while it holds). */
export interface HoldPolicy {
  readonly codes: ReadonlySet<ErrorCode>;
  readonly while: () => boolean;
}
const MESSAGE_ID = new RegExp(MESSAGE_ID_PATTERN);

/**
 * The envelope's own messageId, so an error frame can name what it refuses. Only read for refusals
 * that parsed (invalid fields, sender mismatch); only a header field, never payload.
 */
function messageIdOf(payload: Buffer): string | undefined {
  try {
    const value = parseJson(payload) as { messageId?: unknown } | null;
    const id = value?.messageId;
    return typeof id === "string" && MESSAGE_ID.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Ingest and ack handling shared by the embedded broker and the external-broker bridge. */
export function createMqttIngest({ ingress, mailbox, log }: MqttIngestOptions) {
  function refused(err: unknown, payload: Buffer, what: "envelope" | "ack"): PublishOutcome {
    const error = asRoutingError(err);
    if (error.code === "MAILBOX_FULL") {
      log.info({ code: error.code, bytes: payload.length, what }, "mqtt publish refused for now: no acknowledgement");
      return { kind: "withheld", frame: errorFrame(messageIdOf(payload), error.code, error.message, error.retryAfterMs) };
    }
    // Logged with the code and sizes only: payload bytes appear in no log line.
    // RATE_LIMITED is retryable but answered, not retried by reconnecting (a reconnect would not
    // slow the sender down): an `error` frame with retryAfterMs (issue 14).
    if (error.retryable && error.code !== "RATE_LIMITED") {
      log.warn({ code: error.code, bytes: payload.length, what }, "mqtt publish not accepted (retryable): no acknowledgement");
      throw error;
    }
    const ref = error.code === "INVALID_ENVELOPE" || error.code === "SENDER_MISMATCH" || error.code === "RATE_LIMITED" ? messageIdOf(payload) : undefined;
    log.info({ code: error.code, bytes: payload.length, what, messageId: ref }, "mqtt publish dropped");
    return { kind: "rejected", frame: errorFrame(ref, error.code, error.message, error.retryAfterMs) };
  }

  return {
    /**
     * A SecureEnvelope published by `identity`: accepted only once the ingress bus has it. With
     * `hold`, a refusal whose code it names is not answered: the publish waits (retryAfterMs, at
     * most a second at a time) and is tried again while `hold.while()` holds, so its PUBACK is
     * withheld until it is accepted (MQTT 3.1.1 has no negative PUBACK; issue 14).
     */
    async envelope(payload: Buffer, identity: Urn, hold?: HoldPolicy): Promise<PublishOutcome> {
      for (;;) {
        try {
          await ingress.acceptBytes(payload, identity, "mqtt");
          return ACCEPTED;
        } catch (err) {
          const error = asRoutingError(err);
          if (hold !== undefined && hold.codes.has(error.code) && hold.while()) {
            await new Promise((resolve) => setTimeout(resolve, Math.min(HOLD_STEP_MS, error.retryAfterMs ?? HOLD_STEP_MS)));
            if (hold.while()) continue;
          }
          return refused(err, payload, "envelope");
        }
      }
    },

    /** `{"messageIds": [...]}` published to `identity`'s ack topic: accepted once the ack is durable. */
    async ack(payload: Buffer, identity: Urn): Promise<PublishOutcome> {
      try {
        const body = parseJson(payload);
        if (!isAckBody(body)) throw new RoutingError("INVALID_FRAME", 'an ack is {"messageIds": [...]} with 1..500 ids');
        await mailbox.ack(identity, body.messageIds);
        return ACCEPTED;
      } catch (err) {
        return refused(err, payload, "ack");
      }
    },
  };
}

export type MqttIngest = ReturnType<typeof createMqttIngest>;
