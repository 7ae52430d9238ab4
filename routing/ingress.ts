import { randomUUID } from "node:crypto";
import type { IngressBus, IngressPath } from "../backends/ingress-bus.ts";
import { parseEnvelopeBytes, stampEnvelopeJson } from "../core/envelope.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { IngressGate } from "../limits/ingress-gate.ts";
import type { SendRateLimiter } from "../limits/rate.ts";

/** Room for what stamping adds (senderId, messageId, defaults) on top of the client's envelope. */
export const STAMP_ALLOWANCE_BYTES = 512;

/**
 * Whether `text` is more than `limit` bytes as UTF-8. A UTF-16 code unit is 1 to 3 UTF-8 bytes, so
 * most envelopes are decided by their length alone, without a pass over the payload.
 */
export function utf8Exceeds(text: string, limit: number): boolean {
  if (text.length > limit) return true;
  if (text.length * 3 <= limit) return false;
  return Buffer.byteLength(text) > limit;
}

export interface IngressOptions {
  readonly bus: IngressBus;
  readonly maxEnvelopeBytes: number;
  readonly metrics: Metrics;
  readonly newId?: () => string;
  /** Per-recipient quota (lifecycle/quota.ts), checked for stored (non-ephemeral) messages before publishing. */
  readonly quota?: { admit(recipientId: Urn, bytes: number): Promise<void> };
  /** Per-identity send rate (RATE_LIMITED) and the accepted-not-routed bound (OVERLOADED); limits/. */
  readonly limits?: IngressLimits;
}

export interface IngressLimits {
  readonly rate: SendRateLimiter;
  readonly gate: IngressGate;
}

/**
 * The one ingress path every protocol uses: validate, stamp (sender, id, defaults), serialise once,
 * publish. Resolves the messageId only after the bus has durably accepted the record: that is what
 * a 202, a `sent` frame or a PUBACK promise.
 */
export function createIngress({ bus, maxEnvelopeBytes, metrics, newId = randomUUID, quota, limits }: IngressOptions) {
  async function accept(value: unknown, identity: Urn, path: IngressPath): Promise<string> {
    try {
      // Full: refused before validating and stamping, so refusing costs little under overload.
      limits?.gate.check();
      const { header, json } = stampEnvelopeJson(value, identity, newId);
      if (utf8Exceeds(json, maxEnvelopeBytes + STAMP_ALLOWANCE_BYTES)) {
        throw new RoutingError("ENVELOPE_TOO_LARGE", `envelope exceeds the limit of ${maxEnvelopeBytes} bytes`);
      }
      // A valid send needs room in the ingress (refused OVERLOADED before it costs any rate), then
      // room in its recipient's mailbox, then counts once against its sender's rate.
      limits?.gate.enter();
      let published = false;
      try {
        // String length as the size: the quota is "as last known" anyway, and it spares a pass over the payload.
        if (quota !== undefined && !header.isEphemeral) await quota.admit(header.recipientId, json.length);
        if (limits !== undefined) await limits.rate.consume(identity);
        await bus.publish({
          recipientId: header.recipientId,
          messageId: header.messageId,
          isEphemeral: header.isEphemeral,
          priority: header.priority,
          envelope: json,
          acceptedAt: Date.now(),
          path,
        });
        published = true;
      } finally {
        limits?.gate.leave(published);
      }
      metrics.accepted(path);
      return header.messageId;
    } catch (err) {
      const error = asRoutingError(err);
      metrics.rejected(path, error.code);
      if (error.code === "MAILBOX_FULL") metrics.mailboxFull(path);
      throw error;
    }
  }

  /** For raw bodies (HTTP, MQTT): the size limit applies to the bytes before parsing. */
  async function acceptBytes(raw: Buffer | string, identity: Urn, path: IngressPath): Promise<string> {
    let value: unknown;
    try {
      limits?.gate.check();
      value = parseEnvelopeBytes(raw, maxEnvelopeBytes);
    } catch (err) {
      const error = asRoutingError(err);
      metrics.rejected(path, error.code);
      throw error;
    }
    return accept(value, identity, path);
  }

  return { accept, acceptBytes };
}

export type Ingress = ReturnType<typeof createIngress>;
