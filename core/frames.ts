import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { ErrorCode } from "./errors.ts";

/** Client-to-server WebSocket frames (the same JSON as MQTT payloads where the contract says so). */
const Ref = Type.String({ minLength: 1, maxLength: 128 });
const MessageIds = Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 500 });

export const SendFrameSchema = Type.Object(
  { type: Type.Literal("send"), ref: Ref, envelope: Type.Unknown() },
  { $id: "SendFrame", additionalProperties: false },
);
export const FetchFrameSchema = Type.Object(
  { type: Type.Literal("fetch"), ref: Ref, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) },
  { $id: "FetchFrame", additionalProperties: false },
);
export const AckFrameSchema = Type.Object(
  { type: Type.Literal("ack"), ref: Type.Optional(Ref), messageIds: MessageIds },
  { $id: "AckFrame", additionalProperties: false },
);
/**
 * WebSocket only (MQTT has no auth frame): replaces the session's token before it expires. The new
 * token must verify and name the same identity; answered by `authed` (or `error`, and the session
 * keeps its old token, closing with 4002 when that one expires).
 */
export const AuthFrameSchema = Type.Object(
  { type: Type.Literal("auth"), ref: Ref, token: Type.String({ minLength: 1, maxLength: 8192 }) },
  { $id: "AuthFrame", additionalProperties: false },
);
export const ClientFrameSchema = Type.Union([SendFrameSchema, FetchFrameSchema, AckFrameSchema, AuthFrameSchema]);
export type ClientFrame = Static<typeof ClientFrameSchema>;

export const AckBodySchema = Type.Object({ messageIds: MessageIds }, { $id: "AckBody", additionalProperties: false });
export type AckBody = Static<typeof AckBodySchema>;

const clientFrame = TypeCompiler.Compile(ClientFrameSchema);
const ackBody = TypeCompiler.Compile(AckBodySchema);

export function isClientFrame(value: unknown): value is ClientFrame {
  return clientFrame.Check(value);
}
export function isAckBody(value: unknown): value is AckBody {
  return ackBody.Check(value);
}

/** The ref of a frame that failed validation, if it had a usable one, so the error can answer it. */
export function refOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const ref = (value as { ref?: unknown }).ref;
  return typeof ref === "string" && ref.length <= 128 ? ref : undefined;
}

/*
 * Server-to-client frames are built as strings: the stored envelope JSON is spliced in as-is, so
 * payload bytes are never decoded or re-encoded on the delivery path.
 */
export const POKE_FRAME = '{"type":"poke"}';

export function queuedMessageJson(messageId: string, envelopeJson: string, queuedAt: number): string {
  return `{"id":${JSON.stringify(messageId)},"envelope":${envelopeJson},"queuedAt":"${new Date(queuedAt).toISOString()}"}`;
}

export function messageFrame(queuedMessage: string): string {
  return `{"type":"message","message":${queuedMessage}}`;
}

export function sentFrame(ref: string, messageId: string): string {
  return JSON.stringify({ type: "sent", ref, messageId });
}

export function messagesFrame(ref: string, queuedMessages: readonly string[]): string {
  return `{"type":"messages","ref":${JSON.stringify(ref)},"messages":[${queuedMessages.join(",")}]}`;
}

/** The auth frame's answer: `exp` is the new token's expiry in unix seconds, absent for a token without one. */
export function authedFrame(ref: string, expiresAt: number | undefined): string {
  return JSON.stringify(expiresAt === undefined ? { type: "authed", ref } : { type: "authed", ref, exp: Math.floor(expiresAt / 1000) });
}

export function errorFrame(ref: string | undefined, code: ErrorCode, message: string, retryAfterMs?: number): string {
  const frame = ref === undefined ? { type: "error", code, message } : { type: "error", ref, code, message };
  return JSON.stringify(retryAfterMs === undefined ? frame : { ...frame, retryAfterMs });
}
