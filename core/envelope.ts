import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { RoutingError } from "./errors.ts";
import { assertJsonDepth } from "./json-depth.ts";
import { isUrn, type Urn } from "./urn.ts";

const Base64 = Type.String({ pattern: "^[A-Za-z0-9+/_-]*={0,2}$", description: "opaque base64, never decoded" });

export const MESSAGE_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$";

export const SecureEnvelopeSchema = Type.Object(
  {
    recipientId: Type.String({ minLength: 1, maxLength: 256, description: "URN of the recipient; the only routing input" }),
    messageId: Type.Optional(Type.String({ pattern: MESSAGE_ID_PATTERN, description: "idempotency key per recipient" })),
    senderId: Type.Optional(Type.String({ maxLength: 256, description: "must equal the authenticated identity" })),
    isEphemeral: Type.Optional(Type.Boolean({ default: false })),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, default: 1 })),
    encryptedData: Base64,
    encryptedSymmetricKey: Type.Optional(Base64),
    signature: Type.Optional(Base64),
  },
  { $id: "SecureEnvelope", additionalProperties: false },
);
export type SecureEnvelope = Static<typeof SecureEnvelopeSchema>;

/** An envelope after ingress: every defaulted field filled in, sender stamped. */
export type StampedEnvelope = SecureEnvelope & {
  recipientId: Urn;
  messageId: string;
  senderId: Urn;
  isEphemeral: boolean;
  priority: number;
};

export const HIGH_PRIORITY = 5;

export const QueuedMessageSchema = Type.Object(
  { id: Type.String(), envelope: SecureEnvelopeSchema, queuedAt: Type.String({ format: "date-time" }) },
  { $id: "QueuedMessage" },
);

const checker = TypeCompiler.Compile(SecureEnvelopeSchema);

/** Field names are safe to echo in errors; values are not (zero knowledge). */
function describeFirstError(value: unknown): string {
  const first = checker.Errors(value).First();
  if (!first) return "envelope is invalid";
  const field = first.path.replace(/^\//, "") || "envelope";
  return `${field}: ${first.message.replace(/'[^']*'/g, "value")}`;
}

/**
 * Validates a parsed envelope (size already checked by the caller against the raw bytes) and
 * stamps it: sender = the authenticated identity, messageId assigned if absent, defaults filled.
 */
export function stampEnvelope(value: unknown, identity: Urn, newId: () => string): StampedEnvelope {
  validate(value, identity);
  const stamped: StampedEnvelope = {
    ...value,
    recipientId: value.recipientId,
    messageId: value.messageId ?? newId(),
    senderId: identity,
    isEphemeral: value.isEphemeral ?? false,
    priority: value.priority ?? 1,
  };
  return stamped;
}

function validate(value: unknown, identity: Urn): asserts value is SecureEnvelope & { recipientId: Urn } {
  if (!checker.Check(value)) throw new RoutingError("INVALID_ENVELOPE", describeFirstError(value));
  if (!isUrn(value.recipientId)) throw new RoutingError("INVALID_ENVELOPE", "recipientId: must be urn:<namespace>:<type>:<id>");
  if (value.senderId !== undefined && value.senderId !== identity) {
    throw new RoutingError("SENDER_MISMATCH", "senderId must equal the authenticated identity");
  }
}

/** What the bus record copies out of a stamped envelope. */
export type StampedHeader = Pick<StampedEnvelope, "recipientId" | "messageId" | "isEphemeral" | "priority">;

/** The fields stamping fills in, in the order `stampEnvelope` adds the ones a client left out. */
const STAMPED_KEYS = ["recipientId", "messageId", "senderId", "isEphemeral", "priority"] as const;

/**
 * `stampEnvelope` and `JSON.stringify` in one step, for the ingress hot path: the same checks and
 * the same bytes (the client's keys in its order, then the stamped keys it left out), built as a
 * string. It skips copying the envelope into a new object (a spread of a parsed object costs more
 * than the whole check) and never re-encodes the payload: the base64 fields passed a pattern that
 * admits no character JSON escapes, so they are spliced in as they are, however large.
 */
export function stampEnvelopeJson(value: unknown, identity: Urn, newId: () => string): { readonly header: StampedHeader; readonly json: string } {
  validate(value, identity);
  const stamped = {
    recipientId: value.recipientId,
    messageId: value.messageId ?? newId(),
    senderId: identity,
    isEphemeral: value.isEphemeral ?? false,
    priority: value.priority ?? 1,
  };
  let json = "";
  const keys = Object.keys(value) as Array<keyof SecureEnvelope>;
  for (const key of keys) {
    let text: string | undefined;
    switch (key) {
      case "recipientId":
      case "messageId":
      case "senderId":
        text = JSON.stringify(stamped[key]);
        break;
      case "isEphemeral":
      case "priority":
        text = String(stamped[key]);
        break;
      default: {
        const payload = value[key];
        // Spread-then-stringify drops a key whose value is undefined (in-process callers).
        if (payload !== undefined) text = `"${payload}"`;
      }
    }
    if (text !== undefined) json += `${json ? "," : "{"}"${key}":${text}`;
  }
  for (const key of STAMPED_KEYS) {
    if (!keys.includes(key)) json += `,"${key}":${typeof stamped[key] === "string" ? JSON.stringify(stamped[key]) : String(stamped[key])}`;
  }
  return { header: stamped, json: `${json}}` };
}

/** Parses raw JSON bytes into an envelope value, enforcing the byte limit before parsing. */
export function parseEnvelopeBytes(raw: Buffer | string, maxBytes: number): unknown {
  const size = typeof raw === "string" ? Buffer.byteLength(raw) : raw.length;
  if (size > maxBytes) throw new RoutingError("ENVELOPE_TOO_LARGE", `envelope is ${size} bytes; the limit is ${maxBytes}`);
  return parseJson(raw);
}

export function parseJson(raw: Buffer | string): unknown {
  // Bounded before the parse (issue 14): `[[[[...` never reaches JSON.parse.
  assertJsonDepth(raw);
  try {
    return JSON.parse(typeof raw === "string" ? raw : raw.toString("utf8"));
  } catch {
    throw new RoutingError("INVALID_JSON", "body is not valid JSON");
  }
}
