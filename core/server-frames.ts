import { Type } from "@sinclair/typebox";
import { ErrorBodySchema } from "./error-body.ts";
import { QueuedMessageSchema } from "./envelope.ts";

/**
 * Server-to-client frames (WebSocket text frames; the same JSON on MQTT `clients/<urn>/receive`).
 * `core/frames.ts` builds them as strings (stored envelopes spliced in byte-for-byte); these schemas
 * describe what those builders produce, for the AsyncAPI document, and a test holds the two together.
 */
const Ref = Type.String({ minLength: 1, maxLength: 128 });

export const PokeFrameSchema = Type.Object(
  { type: Type.Literal("poke") },
  { $id: "PokeFrame", additionalProperties: false, description: "the mailbox has something new: fetch it" },
);
export const MessageFrameSchema = Type.Object(
  { type: Type.Literal("message"), message: QueuedMessageSchema },
  {
    $id: "MessageFrame",
    additionalProperties: false,
    description: "the message itself (push mode, and every ephemeral message); stored ones still wait for an ack",
  },
);
export const SentFrameSchema = Type.Object(
  { type: Type.Literal("sent"), ref: Ref, messageId: Type.String() },
  { $id: "SentFrame", additionalProperties: false, description: "the send with this ref is durably accepted" },
);
export const MessagesFrameSchema = Type.Object(
  { type: Type.Literal("messages"), ref: Ref, messages: Type.Array(QueuedMessageSchema) },
  { $id: "MessagesFrame", additionalProperties: false, description: "the answer to a fetch" },
);
export const ErrorFrameSchema = Type.Object(
  {
    type: Type.Literal("error"),
    ref: Type.Optional(Type.String()),
    code: ErrorBodySchema.properties.error.properties.code,
    message: Type.String(),
    retryAfterMs: ErrorBodySchema.properties.error.properties.retryAfterMs,
  },
  { $id: "ErrorFrame", additionalProperties: false, description: "a frame failed; carries its ref when it had a usable one" },
);
export const AuthedFrameSchema = Type.Object(
  {
    type: Type.Literal("authed"),
    ref: Ref,
    exp: Type.Optional(Type.Integer({ description: "the new token's expiry, unix seconds (absent: the token has no exp)" })),
  },
  { $id: "AuthedFrame", additionalProperties: false, description: "the auth frame with this ref replaced the session's token (WebSocket only)" },
);
