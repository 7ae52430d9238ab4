import { parseJson } from "../core/envelope.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Ingress } from "../routing/ingress.ts";

export interface BatchLimits {
  /** ROUTING_MAX_BATCH_ENVELOPES. */
  readonly maxEnvelopes: number;
  /** ROUTING_MAX_BATCH_BYTES (the engine answers 413 past it before the body is read whole). */
  readonly maxBytes: number;
}

/**
 * `POST /send/batch`: `{"envelopes": [...]}`, 1..maxEnvelopes items, at most maxBytes in all. The
 * answer (200) lists, in the order given, each item's `messageId` (durable, as a 202 would be) or
 * its `error`; a body that is not such an object is 400, one over the byte cap 413.
 */
export async function sendBatch(ingress: Ingress, limits: BatchLimits, body: Buffer, identity: Urn): Promise<string> {
  if (body.length > limits.maxBytes) throw new RoutingError("ENVELOPE_TOO_LARGE", `the batch is ${body.length} bytes; the limit is ${limits.maxBytes}`);
  const value = parseJson(body);
  const envelopes = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as { envelopes?: unknown }).envelopes : undefined;
  if (!Array.isArray(envelopes) || envelopes.length < 1 || envelopes.length > limits.maxEnvelopes || Object.keys(value as object).length !== 1) {
    throw new RoutingError("INVALID_REQUEST", `body must be {"envelopes": [1..${limits.maxEnvelopes} SecureEnvelopes]}`);
  }
  const results = await ingress.acceptBatch(envelopes, identity, "http");
  return JSON.stringify({ results: results.map((r) => ("messageId" in r ? { messageId: r.messageId } : r.error.toBody())) });
}
