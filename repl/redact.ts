import type { CallingOptions } from "moleculer";

/** The SecureEnvelope fields carried byte-for-byte and never shown by operator tools. */
const PAYLOAD_FIELDS: ReadonlySet<string> = new Set(["encryptedData", "encryptedSymmetricKey", "signature"]);

/**
 * A copy of `value` with every payload field replaced by its size (`<redacted: 44 chars>`), at any
 * depth: what the REPL may print. Other values are kept as they are.
 */
export function redactPayloads(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactPayloads);
  if (value === null || typeof value !== "object" || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = PAYLOAD_FIELDS.has(key) && typeof inner === "string" ? `<redacted: ${inner.length} chars>` : redactPayloads(inner);
  }
  return out;
}

/**
 * Broker middleware for the REPL's process: every result of a call made from this process
 * (the REPL's own `call`/`dcall` included, e.g. `call mailbox.fetch`) comes back with its payload
 * fields redacted. Calls served to other nodes and the HTTP/WebSocket paths are not affected.
 */
type CallHandler = (actionName: string, params: unknown, opts: CallingOptions) => Promise<unknown>;

export const redactPayloadsMiddleware = {
  call(next: CallHandler): CallHandler {
    return (actionName, params, opts) => next(actionName, params, opts).then(redactPayloads);
  },
};
