import { randomUUID } from "node:crypto";
import type { IngressBus, IngressPath } from "../backends/ingress-bus.ts";
import { parseEnvelopeBytes, stampEnvelope } from "../core/envelope.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";

/** Room for what stamping adds (senderId, messageId, defaults) on top of the client's envelope. */
export const STAMP_ALLOWANCE_BYTES = 512;

export interface IngressOptions {
  readonly bus: IngressBus;
  readonly maxEnvelopeBytes: number;
  readonly metrics: Metrics;
  readonly newId?: () => string;
}

/**
 * The one ingress path every protocol uses: validate, stamp (sender, id, defaults), serialise once,
 * publish. Resolves the messageId only after the bus has durably accepted the record: that is what
 * a 202, a `sent` frame or a PUBACK promise.
 */
export function createIngress({ bus, maxEnvelopeBytes, metrics, newId = randomUUID }: IngressOptions) {
  async function accept(value: unknown, identity: Urn, path: IngressPath): Promise<string> {
    try {
      const envelope = stampEnvelope(value, identity, newId);
      const json = JSON.stringify(envelope);
      if (Buffer.byteLength(json) > maxEnvelopeBytes + STAMP_ALLOWANCE_BYTES) {
        throw new RoutingError("ENVELOPE_TOO_LARGE", `envelope exceeds the limit of ${maxEnvelopeBytes} bytes`);
      }
      await bus.publish({
        recipientId: envelope.recipientId,
        messageId: envelope.messageId,
        isEphemeral: envelope.isEphemeral,
        priority: envelope.priority,
        envelope: json,
        acceptedAt: Date.now(),
        path,
      });
      metrics.accepted(path);
      return envelope.messageId;
    } catch (err) {
      const error = asRoutingError(err);
      metrics.rejected(path, error.code);
      throw error;
    }
  }

  /** For raw bodies (HTTP, MQTT): the size limit applies to the bytes before parsing. */
  async function acceptBytes(raw: Buffer | string, identity: Urn, path: IngressPath): Promise<string> {
    let value: unknown;
    try {
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
