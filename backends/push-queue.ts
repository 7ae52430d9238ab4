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

/** A push given up on (its provider kept failing): kept for operators, never retried from here. */
export interface PushDeadLetter extends PendingPush {
  /** Why, as the sender said it (a provider error code; never payload bytes or tokens). */
  readonly reason: string;
  /** Epoch ms. */
  readonly deadAt: number;
}

/**
 * The durable hand-off from the router to the push senders: the router records that a push is
 * due for an offline recipient; the push service takes and completes them at its own pace, so a
 * slow provider never slows routing.
 *
 * Guarantees: `enqueue` is durable before it resolves; `pending` returns oldest first and does not
 * remove; `complete` removes, idempotently. `deadLetter` moves a pending push into the dead-letter
 * record in one durable step (it is no longer pending); it is idempotent and ignores unknown seqs.
 * `deadLetters` lists that record newest first. Payload bytes are never part of a push request.
 */
export interface PushQueue {
  enqueue(due: PushDue): Promise<void>;
  pending(limit: number): Promise<PendingPush[]>;
  complete(seqs: readonly number[]): Promise<void>;
  /** Pending pushes (dead letters not included). */
  count(): Promise<number>;
  deadLetter(seq: number, reason: string): Promise<void>;
  deadLetters(limit: number): Promise<PushDeadLetter[]>;
  deadLetterCount(): Promise<number>;
  /** Removes the recipient's pending pushes and push dead letters (account deletion); resolves with how many. */
  purge(recipientId: Urn): Promise<number>;
  close(): Promise<void>;
}
