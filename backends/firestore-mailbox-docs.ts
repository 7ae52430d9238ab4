import { createHash } from "node:crypto";
import { FieldValue, type CollectionReference, type DocumentReference, type Firestore, type Timestamp, type Transaction } from "@google-cloud/firestore";
import type { Urn } from "../core/urn.ts";
import { docId } from "./firestore-client.ts";

/** The Firestore mailbox's documents (layout on createFirestoreMailbox). */
export interface MessageDoc {
  readonly messageId: string;
  /** UTF-8 bytes of the envelope (the usage counter's share). */
  readonly bytes?: number;
  readonly priority: number;
  readonly high: boolean;
  readonly seq: number;
  readonly envelope: string;
  readonly queuedAt: number;
}

export interface DedupDoc {
  readonly recipientId: string;
  readonly messageId: string;
  readonly expireAt: Timestamp;
}

export function usageRef(db: Firestore, recipientId: Urn): DocumentReference {
  return db.collection("mailboxUsage").doc(docId(recipientId));
}

export function messagesOf(db: Firestore, recipientId: Urn): CollectionReference {
  return db.collection("mailboxes").doc(docId(recipientId)).collection("messages");
}

export function dedupRef(db: Firestore, recipientId: Urn, messageId: string): DocumentReference {
  const hash = createHash("sha256")
    .update(JSON.stringify([recipientId, messageId]))
    .digest("hex");
  return db.collection("dedup").doc(hash);
}

/**
 * Deletes those of `refs` that exist, and what `alsoDelete` adds, decrementing the usage document
 * by their count and bytes, in one transaction; resolves with how many messages were deleted.
 */
export async function removeRefs(
  db: Firestore,
  usage: DocumentReference,
  refs: DocumentReference[],
  alsoDelete: (tx: Transaction, gone: DocumentReference[]) => unknown[],
): Promise<number> {
  if (refs.length === 0) return 0;
  return db.runTransaction(async (tx) => {
    const snaps = await tx.getAll(...refs);
    const gone: DocumentReference[] = [];
    let bytes = 0;
    for (const snap of snaps) {
      if (!snap.exists) continue;
      tx.delete(snap.ref);
      gone.push(snap.ref);
      bytes += Number(snap.get("bytes") ?? Buffer.byteLength(String(snap.get("envelope") ?? "")));
    }
    if (gone.length > 0) {
      alsoDelete(tx, gone);
      tx.set(usage, { count: FieldValue.increment(-gone.length), bytes: FieldValue.increment(-bytes) }, { merge: true });
    }
    return gone.length;
  });
}
