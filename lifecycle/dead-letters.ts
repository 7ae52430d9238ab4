import type { DeadLetter } from "../backends/ingress-bus.ts";

/** A dead letter as operators see it: header fields, reason, attempts, time; never payload bytes. */
export interface DeadLetterView {
  readonly id: string;
  readonly recipientId: string;
  readonly messageId: string;
  readonly senderId: string | undefined;
  readonly priority: number;
  readonly isEphemeral: boolean;
  readonly path: string;
  readonly acceptedAt: string;
  readonly reason: string;
  readonly attempts: number;
  readonly deadAt: string;
  /** Size of the envelope, the only thing said about it beyond its header. */
  readonly envelopeBytes: number;
}

function senderOf(envelope: string): string | undefined {
  try {
    const sender = (JSON.parse(envelope) as { senderId?: unknown }).senderId;
    return typeof sender === "string" ? sender : undefined;
  } catch {
    return undefined;
  }
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : "";
}

export function deadLetterView(d: DeadLetter): DeadLetterView {
  const r = d.record;
  return {
    id: d.id,
    recipientId: r.recipientId,
    messageId: r.messageId,
    senderId: senderOf(r.envelope),
    priority: r.priority,
    isEphemeral: r.isEphemeral,
    path: r.path,
    acceptedAt: iso(r.acceptedAt),
    reason: d.reason,
    attempts: d.attempts,
    deadAt: iso(d.deadAt),
    envelopeBytes: Buffer.byteLength(r.envelope),
  };
}
