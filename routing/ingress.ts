import { randomUUID } from "node:crypto";
import type { IngressBus, IngressPath } from "../backends/ingress-bus.ts";
import { parseEnvelopeBytes, stampEnvelopeJson, type StampedHeader } from "../core/envelope.ts";
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
type Stamped = { readonly header: StampedHeader; readonly json: string };

export function createIngress({ bus, maxEnvelopeBytes, metrics, newId = randomUUID, quota, limits }: IngressOptions) {
  /** Validates and stamps; throws the envelope's refusal. */
  function stamp(value: unknown, identity: Urn): Stamped {
    const stamped = stampEnvelopeJson(value, identity, newId);
    if (utf8Exceeds(stamped.json, maxEnvelopeBytes + STAMP_ALLOWANCE_BYTES)) {
      throw new RoutingError("ENVELOPE_TOO_LARGE", `envelope exceeds the limit of ${maxEnvelopeBytes} bytes`);
    }
    return stamped;
  }

  /**
   * Room in the ingress (refused OVERLOADED before it costs any rate), then in the recipient's
   * mailbox, then one unit of the sender's rate. Admitted, the send holds its ingress place until
   * `publish` gives it back.
   */
  async function admit({ header, json }: Stamped, identity: Urn): Promise<void> {
    limits?.gate.enter();
    try {
      // String length as the size: the quota is "as last known" anyway, and it spares a pass over the payload.
      if (quota !== undefined && !header.isEphemeral) await quota.admit(header.recipientId, json.length);
      if (limits !== undefined) await limits.rate.consume(identity);
    } catch (err) {
      limits?.gate.leave(false);
      throw err;
    }
  }

  /** The bus publish of an admitted send; resolves its messageId once durable. */
  async function publish({ header, json }: Stamped, path: IngressPath): Promise<string> {
    let published = false;
    try {
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
  }

  async function admitAndPublish(stamped: Stamped, identity: Urn, path: IngressPath): Promise<string> {
    await admit(stamped, identity);
    return publish(stamped, path);
  }

  function refused(err: unknown, path: IngressPath): RoutingError {
    const error = asRoutingError(err);
    metrics.rejected(path, error.code);
    if (error.code === "MAILBOX_FULL") metrics.mailboxFull(path);
    return error;
  }

  async function accept(value: unknown, identity: Urn, path: IngressPath): Promise<string> {
    try {
      // Full: refused before validating and stamping, so refusing costs little under overload.
      limits?.gate.check();
      return await admitAndPublish(stamp(value, identity), identity, path);
    } catch (err) {
      throw refused(err, path);
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

  /**
   * Several envelopes of one sender (`POST /send/batch`): each obeys every rule of a single send
   * and counts once against the rate; one refused never fails the others. Every publish is issued
   * in the same turn, so the bus makes them one durable write where it can (the embedded SQLite
   * bus: one group-commit transaction; NATS: pipelined JetStream publishes awaited together;
   * Pub/Sub: one client publish batch). Resolves, in order, each item's messageId or its
   * refusal, once every accepted item is durable.
   */
  async function acceptBatch(values: readonly unknown[], identity: Urn, path: IngressPath): Promise<BatchResult[]> {
    metrics.batchSize(values.length);
    // Each item is validated and admitted on its own (rate, quota, ingress room), all together...
    const admitted = await Promise.allSettled(
      values.map(async (value) => {
        limits?.gate.check();
        // The item as its client wrote it (`POST /send` measures the body's bytes the same way).
        if (utf8Exceeds(JSON.stringify(value) ?? "", maxEnvelopeBytes))
          throw new RoutingError("ENVELOPE_TOO_LARGE", `envelope exceeds the limit of ${maxEnvelopeBytes} bytes`);
        const stamped = stamp(value, identity);
        await admit(stamped, identity);
        return stamped;
      }),
    );
    // ...then every admitted one is published in this one turn, whenever its admission resolved.
    const settled = await Promise.allSettled(admitted.map((a) => (a.status === "fulfilled" ? publish(a.value, path) : Promise.reject(a.reason))));
    return settled.map((r) => {
      if (r.status === "fulfilled") return { messageId: r.value };
      return { error: refused(r.reason, path) };
    });
  }

  return { accept, acceptBytes, acceptBatch };
}

/** One item's outcome in a batch: accepted (durable) with its id, or refused. */
export type BatchResult = { readonly messageId: string } | { readonly error: RoutingError };

export type Ingress = ReturnType<typeof createIngress>;
