import type { Urn } from "../core/urn.ts";

export interface PushDue {
  readonly recipientId: Urn;
  readonly messageId: string;
  readonly priority: number;
  /** Epoch ms when the router decided the push was due. */
  readonly dueAt: number;
}

export interface PendingPush extends PushDue {
  /** Queue position, for `complete`. */
  readonly seq: number;
}

/**
 * The durable hand-off from the router to the push senders: the router records that a push is
 * due for an offline recipient; the push service takes and completes them at its own pace, so a
 * slow provider never slows routing.
 *
 * Guarantees: `enqueue` is durable before it resolves; `pending` returns oldest first and does not
 * remove; `complete` removes, idempotently. Payload bytes are never part of a push request.
 */
export interface PushQueue {
  enqueue(due: PushDue): Promise<void>;
  pending(limit: number): Promise<PendingPush[]>;
  complete(seqs: readonly number[]): Promise<void>;
  count(): Promise<number>;
  close(): Promise<void>;
}
