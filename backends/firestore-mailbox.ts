import { FieldValue, Firestore, Timestamp, type DocumentReference } from "@google-cloud/firestore";
import { HIGH_PRIORITY } from "../core/envelope.ts";
import type { Urn } from "../core/urn.ts";
import {
  DEFAULT_RETENTION_MS,
  type Mailbox,
  type MailboxDepth,
  type MailboxEntry,
  type MailboxOptions,
  type MailboxPurged,
  type MailboxUsage,
  type StoreOutcome,
} from "./mailbox.ts";
import { docId, openFirestore, type FirestoreConnectionOptions } from "./firestore-client.ts";
import { dedupRef, messagesOf, removeRefs, usageRef, type DedupDoc, type MessageDoc } from "./firestore-mailbox-docs.ts";
import { GRPC_ALREADY_EXISTS, grpcCode } from "./grpc.ts";
import { guarded } from "./guarded.ts";
import { readyWithin } from "./readiness.ts";

export interface FirestoreMailboxOptions extends MailboxOptions {
  /** A client the caller owns (shared with other roles; never closed here), or how to open one (closed on `close`). */
  readonly firestore: Firestore | FirestoreConnectionOptions;
  /** Clock for the de-duplication window; default Date.now. */
  readonly now?: () => number;
}

/**
 * Mailboxes in Firestore:
 * - `mailboxes/<urn>/messages/<messageId>`: {messageId, priority, high, seq, envelope, queuedAt}.
 *   `fetch` orders by high desc, seq asc: a composite index in production (deploy/firestore.indexes.json;
 *   the emulator needs none). `seq` is this process's store order: epoch ms × 1000 plus a counter, so
 *   entries stored by one instance keep their call order and entries of several instances interleave
 *   by their clocks.
 * - `dedup/<sha256(urn, messageId)>`: {recipientId, messageId, expireAt}. The first store creates it
 *   and the message in one batch (create fails if either exists); only then a transaction decides
 *   whether an existing record has expired (by the injected clock) and the pair is new again. In
 *   production a TTL policy on `dedup.expireAt` deletes expired records (deploy/firestore.indexes.json).
 * - `mailboxUsage/<urn>`: {recipientId, count, bytes}, changed by FieldValue.increment in the same
 *   batch or transaction as every message created or deleted: the quota reads one document. (A
 *   document takes about one sustained write per second: a recipient receiving faster than that
 *   sees its stores contend on it; see docs/data-lifecycle.md.)
 * - Retention: `fetch` skips and deletes expired messages of the mailbox it reads; `expire` sweeps
 *   the collection group `messages` by `queuedAt` (a collection-group single-field index in
 *   production, deploy/firestore.indexes.json), a few hundred per transaction. Not a TTL policy: a
 *   TTL deletion could not keep `mailboxUsage` right.
 * Writes resolve once Firestore committed them (replicated, durable); `ack` deletes in a transaction.
 * Document ids escape `/` (and the few other forms Firestore refuses), so any URN or message id fits.
 */
export function createFirestoreMailbox(opts: FirestoreMailboxOptions): Mailbox {
  return new FirestoreMailbox(opts);
}

/** Firestore's limit of writes per transaction. */
const WRITE_BATCH = 500;

class FirestoreMailbox implements Mailbox {
  #db: Firestore;
  #owned: boolean;
  #ttlMs: number;
  #retentionMs: number;
  #onExpired: ((count: number) => void) | undefined;
  #now: () => number;
  #lastSeq = 0;
  #open = true;

  constructor(opts: FirestoreMailboxOptions) {
    this.#owned = !(opts.firestore instanceof Firestore);
    this.#db = opts.firestore instanceof Firestore ? opts.firestore : openFirestore(opts.firestore);
    this.#ttlMs = opts.dedupTtlMs;
    this.#retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.#onExpired = opts.onExpired;
    this.#now = opts.now ?? Date.now;
  }

  store(entry: MailboxEntry): Promise<StoreOutcome> {
    return this.#guard("mailbox store", async () => {
      const now = this.#now();
      // Taken at the call, so stores issued together keep their order whatever order they commit in.
      const seq = this.#nextSeq();
      const dedupDoc = dedupRef(this.#db, entry.recipientId, entry.messageId);
      const messageRef = messagesOf(this.#db, entry.recipientId).doc(docId(entry.messageId));
      const dedup: DedupDoc = { recipientId: entry.recipientId, messageId: entry.messageId, expireAt: Timestamp.fromMillis(now + this.#ttlMs) };
      const bytes = Buffer.byteLength(entry.envelope);
      const usageDoc = usageRef(this.#db, entry.recipientId);
      const grow = { recipientId: entry.recipientId, count: FieldValue.increment(1), bytes: FieldValue.increment(bytes) };
      const message: MessageDoc = {
        messageId: entry.messageId,
        bytes,
        priority: entry.priority,
        high: entry.priority >= HIGH_PRIORITY,
        seq,
        envelope: entry.envelope,
        queuedAt: entry.queuedAt,
      };
      try {
        await this.#db.batch().create(dedupDoc, dedup).create(messageRef, message).set(usageDoc, grow, { merge: true }).commit();
        return "stored";
      } catch (err) {
        if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
      }
      // Seen before: new again only if its record expired and the message is no longer there.
      return this.#db.runTransaction(async (tx): Promise<StoreOutcome> => {
        const [seen, existing] = await tx.getAll(dedupDoc, messageRef);
        const expireAt: unknown = seen.get("expireAt");
        if (seen.exists && expireAt instanceof Timestamp && expireAt.toMillis() > now) return "duplicate";
        tx.set(dedupDoc, dedup);
        // Still unacked after its window: a duplicate too (like every other store).
        if (existing.exists) return "duplicate";
        tx.create(messageRef, message);
        tx.set(usageDoc, grow, { merge: true });
        return "stored";
      });
    });
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return this.#guard("mailbox fetch", async () => {
      if (limit <= 0) return [];
      const cutoff = this.#cutoff();
      for (;;) {
        const snap = await messagesOf(this.#db, recipientId).orderBy("high", "desc").orderBy("seq", "asc").limit(Math.floor(limit)).get();
        const expired = snap.docs.filter((doc) => (doc.get("queuedAt") as number) <= cutoff);
        if (expired.length === 0) {
          return snap.docs.map((doc) => {
            const m = doc.data() as MessageDoc;
            return { recipientId, messageId: m.messageId, priority: m.priority, envelope: m.envelope, queuedAt: m.queuedAt };
          });
        }
        // Expired ones are deleted on the way (and never returned); then read again.
        const removed = await this.#remove(
          recipientId,
          expired.map((d) => d.ref),
        );
        if (removed > 0) this.#onExpired?.(removed);
      }
    });
  }

  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number> {
    return this.#guard("mailbox ack", async () => {
      const unique = [...new Set(messageIds)];
      let removed = 0;
      for (let i = 0; i < unique.length; i += WRITE_BATCH) {
        removed += await this.#remove(
          recipientId,
          unique.slice(i, i + WRITE_BATCH).map((id) => messagesOf(this.#db, recipientId).doc(docId(id))),
        );
      }
      return removed;
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return this.#guard("mailbox depth", async () => {
      const live = messagesOf(this.#db, recipientId).where("queuedAt", ">", this.#cutoff());
      // One snapshot for both reads.
      return this.#db.runTransaction(
        async (tx) => {
          const counted = await tx.get(live.count());
          const oldest = await tx.get(live.orderBy("queuedAt", "asc").limit(1));
          const first = oldest.docs[0]?.data() as MessageDoc | undefined;
          return { count: counted.data().count, oldestQueuedAt: first?.queuedAt };
        },
        { readOnly: true },
      );
    });
  }

  usage(recipientId: Urn): Promise<MailboxUsage> {
    return this.#guard("mailbox usage", async () => {
      const snap = await usageRef(this.#db, recipientId).get();
      return { count: Math.max(0, Number(snap.get("count") ?? 0)), bytes: Math.max(0, Number(snap.get("bytes") ?? 0)) };
    });
  }

  largest(limit: number): Promise<number[]> {
    return this.#guard("mailbox largest", async () => {
      if (limit <= 0) return [];
      const snap = await this.#db.collection("mailboxUsage").where("count", ">", 0).orderBy("count", "desc").limit(limit).get();
      return snap.docs.map((d) => Number(d.get("count")));
    });
  }

  /** Sweeps the `messages` collection group by queuedAt, oldest first, one mailbox's share per transaction. */
  expire(limit: number): Promise<number> {
    return this.#guard("mailbox expire", async () => {
      const cutoff = this.#cutoff();
      let total = 0;
      while (total < limit) {
        const snap = await this.#db
          .collectionGroup("messages")
          .where("queuedAt", "<=", cutoff)
          .orderBy("queuedAt")
          .limit(Math.min(WRITE_BATCH, limit - total))
          .get();
        if (snap.empty) break;
        const byMailbox = new Map<string, DocumentReference[]>();
        for (const doc of snap.docs) {
          const mailbox = doc.ref.parent.parent;
          if (mailbox === null) continue;
          byMailbox.set(mailbox.id, [...(byMailbox.get(mailbox.id) ?? []), doc.ref]);
        }
        let removed = 0;
        for (const [mailboxId, refs] of byMailbox) removed += await removeRefs(this.#db, this.#db.collection("mailboxUsage").doc(mailboxId), refs, () => []);
        total += removed;
        if (removed === 0 || snap.size < WRITE_BATCH) break;
      }
      return total;
    });
  }

  /**
   * Messages with their de-duplication records (a transaction per WRITE_BATCH / 2), then the records
   * whose message is gone (one stored meanwhile keeps both), then the usage document once empty.
   */
  purge(recipientId: Urn): Promise<MailboxPurged> {
    return this.#guard("mailbox purge", async () => {
      let messages = 0;
      let dedup = 0;
      const half = WRITE_BATCH / 2 - 1;
      for (;;) {
        const snap = await messagesOf(this.#db, recipientId).limit(half).get();
        if (snap.empty) break;
        const ids = snap.docs.map((d) => d.get("messageId") as string);
        const removed = await removeRefs(
          this.#db,
          usageRef(this.#db, recipientId),
          snap.docs.map((d) => d.ref),
          (tx, gone) => {
            const records = gone.map((ref) => dedupRef(this.#db, recipientId, ids[snap.docs.findIndex((d) => d.ref.isEqual(ref))]));
            for (const r of records) tx.delete(r);
            return records;
          },
        );
        messages += removed;
        dedup += removed;
      }
      for (;;) {
        const snap = await this.#db
          .collection("dedup")
          .where("recipientId", "==", recipientId)
          .limit(WRITE_BATCH / 2)
          .get();
        if (snap.empty) break;
        const n = await this.#db.runTransaction(async (tx) => {
          const records = await tx.getAll(...snap.docs.map((d) => d.ref));
          const kept = await tx.getAll(...records.map((r) => messagesOf(this.#db, recipientId).doc(docId(String(r.get("messageId"))))));
          let deleted = 0;
          records.forEach((r, i) => {
            if (!r.exists || kept[i].exists) return;
            tx.delete(r.ref);
            deleted++;
          });
          return deleted;
        });
        dedup += n;
        if (n === 0) break;
      }
      await this.#db.runTransaction(async (tx) => {
        const usage = await tx.get(usageRef(this.#db, recipientId));
        if (usage.exists && Number(usage.get("count") ?? 0) <= 0) tx.delete(usage.ref);
      });
      return { messages, dedup };
    });
  }

  async ready(): Promise<boolean> {
    if (!this.#open) return false;
    return readyWithin(this.#db.collection("mailboxes").limit(1).get());
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    if (this.#owned) await this.#db.terminate().catch(() => undefined);
  }

  #cutoff(): number {
    return this.#now() - this.#retentionMs;
  }

  /** Deletes those of `refs` (one recipient's messages) that exist, with the usage counter, in one transaction. */
  #remove(recipientId: Urn, refs: DocumentReference[]): Promise<number> {
    return removeRefs(this.#db, usageRef(this.#db, recipientId), refs, () => []);
  }

  #nextSeq(): number {
    this.#lastSeq = Math.max(this.#lastSeq + 1, Date.now() * 1000);
    return this.#lastSeq;
  }

  #guard<T>(what: string, op: () => Promise<T>): Promise<T> {
    return guarded(what, this.#open, op);
  }
}
