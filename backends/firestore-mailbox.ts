import { createHash } from "node:crypto";
import { Firestore, Timestamp, type CollectionReference, type DocumentReference } from "@google-cloud/firestore";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { Mailbox, MailboxDepth, MailboxEntry, MailboxOptions, StoreOutcome } from "./mailbox.ts";
import { readyWithin } from "./readiness.ts";

/** How to reach Firestore when no client is passed in. */
export interface FirestoreConnectionOptions {
  readonly projectId: string;
  /** `host:port` of the Firestore emulator; unset means Google's service with Application Default Credentials. */
  readonly emulatorHost?: string;
  /** Default "(default)". */
  readonly databaseId?: string;
}

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
 * Writes resolve once Firestore committed them (replicated, durable); `ack` deletes in a transaction.
 * Document ids escape `/` (and the few other forms Firestore refuses), so any URN or message id fits.
 */
export function createFirestoreMailbox(opts: FirestoreMailboxOptions): Mailbox {
  return new FirestoreMailbox(opts);
}

/** Opens a client: on the emulator without credentials, else with Application Default Credentials. */
export function openFirestore(conn: FirestoreConnectionOptions): Firestore {
  const base = { projectId: conn.projectId, databaseId: conn.databaseId, ignoreUndefinedProperties: true };
  if (conn.emulatorHost === undefined) return new Firestore(base);
  // A universe domain given up front keeps the auth library from probing for GCE metadata (seconds, and warnings).
  return new Firestore({ ...base, host: conn.emulatorHost, ssl: false, universeDomain: "googleapis.com" });
}

/**
 * A Firestore document id for any string: `%` and `/` are percent-escaped, and the ids Firestore
 * refuses ("." , "..", "__…__") get their first character escaped. Injective: `%` only ever starts an escape.
 */
export function docId(value: string): string {
  const escaped = value.replace(/%/g, "%25").replace(/\//g, "%2F");
  if (escaped === "") return "%";
  if (escaped === "." || escaped === ".." || /^__.*__$/.test(escaped)) {
    return `%${escaped.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}${escaped.slice(1)}`;
  }
  return escaped;
}

function unavailable(what: string, cause?: unknown): RoutingError {
  return new RoutingError("BACKEND_UNAVAILABLE", what, cause === undefined ? undefined : { cause });
}

const GRPC_ALREADY_EXISTS = 6;
/** Firestore's limit of writes per transaction. */
const WRITE_BATCH = 500;

function grpcCode(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "number" ? err.code : undefined;
}

interface MessageDoc {
  readonly messageId: string;
  readonly priority: number;
  readonly high: boolean;
  readonly seq: number;
  readonly envelope: string;
  readonly queuedAt: number;
}

interface DedupDoc {
  readonly recipientId: string;
  readonly messageId: string;
  readonly expireAt: Timestamp;
}

class FirestoreMailbox implements Mailbox {
  #db: Firestore;
  #owned: boolean;
  #ttlMs: number;
  #now: () => number;
  #lastSeq = 0;
  #open = true;

  constructor(opts: FirestoreMailboxOptions) {
    this.#owned = !(opts.firestore instanceof Firestore);
    this.#db = opts.firestore instanceof Firestore ? opts.firestore : openFirestore(opts.firestore);
    this.#ttlMs = opts.dedupTtlMs;
    this.#now = opts.now ?? Date.now;
  }

  store(entry: MailboxEntry): Promise<StoreOutcome> {
    return this.#guard("mailbox store", async () => {
      const now = this.#now();
      // Taken at the call, so stores issued together keep their order whatever order they commit in.
      const seq = this.#nextSeq();
      const dedupRef = this.#dedupRef(entry.recipientId, entry.messageId);
      const messageRef = this.#messages(entry.recipientId).doc(docId(entry.messageId));
      const dedup: DedupDoc = { recipientId: entry.recipientId, messageId: entry.messageId, expireAt: Timestamp.fromMillis(now + this.#ttlMs) };
      const message: MessageDoc = {
        messageId: entry.messageId,
        priority: entry.priority,
        high: entry.priority >= 5,
        seq,
        envelope: entry.envelope,
        queuedAt: entry.queuedAt,
      };
      try {
        await this.#db.batch().create(dedupRef, dedup).create(messageRef, message).commit();
        return "stored";
      } catch (err) {
        if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
      }
      // Seen before: new again only if its record expired and the message is no longer there.
      return this.#db.runTransaction(async (tx): Promise<StoreOutcome> => {
        const [seen, existing] = await tx.getAll(dedupRef, messageRef);
        const expireAt: unknown = seen.get("expireAt");
        if (seen.exists && expireAt instanceof Timestamp && expireAt.toMillis() > now) return "duplicate";
        tx.set(dedupRef, dedup);
        // Still unacked after its window: a duplicate too (like every other store).
        if (existing.exists) return "duplicate";
        tx.create(messageRef, message);
        return "stored";
      });
    });
  }

  fetch(recipientId: Urn, limit: number): Promise<MailboxEntry[]> {
    return this.#guard("mailbox fetch", async () => {
      if (limit <= 0) return [];
      const snap = await this.#messages(recipientId).orderBy("high", "desc").orderBy("seq", "asc").limit(Math.floor(limit)).get();
      return snap.docs.map((doc) => {
        const m = doc.data() as MessageDoc;
        return { recipientId, messageId: m.messageId, priority: m.priority, envelope: m.envelope, queuedAt: m.queuedAt };
      });
    });
  }

  ack(recipientId: Urn, messageIds: readonly string[]): Promise<number> {
    return this.#guard("mailbox ack", async () => {
      const unique = [...new Set(messageIds)];
      let removed = 0;
      for (let i = 0; i < unique.length; i += WRITE_BATCH) {
        const refs = unique.slice(i, i + WRITE_BATCH).map((id) => this.#messages(recipientId).doc(docId(id)));
        removed += await this.#db.runTransaction(async (tx) => {
          const snaps = await tx.getAll(...refs);
          let n = 0;
          for (const snap of snaps) {
            if (!snap.exists) continue;
            tx.delete(snap.ref);
            n++;
          }
          return n;
        });
      }
      return removed;
    });
  }

  depth(recipientId: Urn): Promise<MailboxDepth> {
    return this.#guard("mailbox depth", async () => {
      const messages = this.#messages(recipientId);
      // One snapshot for both reads.
      return this.#db.runTransaction(
        async (tx) => {
          const counted = await tx.get(messages.count());
          const oldest = await tx.get(messages.orderBy("queuedAt", "asc").limit(1));
          const first = oldest.docs[0]?.data() as MessageDoc | undefined;
          return { count: counted.data().count, oldestQueuedAt: first?.queuedAt };
        },
        { readOnly: true },
      );
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

  #nextSeq(): number {
    this.#lastSeq = Math.max(this.#lastSeq + 1, Date.now() * 1000);
    return this.#lastSeq;
  }

  #messages(recipientId: Urn): CollectionReference {
    return this.#db.collection("mailboxes").doc(docId(recipientId)).collection("messages");
  }

  #dedupRef(recipientId: Urn, messageId: string): DocumentReference {
    const hash = createHash("sha256").update(JSON.stringify([recipientId, messageId])).digest("hex");
    return this.#db.collection("dedup").doc(hash);
  }

  async #guard<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (!this.#open) throw unavailable(`${what}: closed`);
    try {
      return await op();
    } catch (err) {
      throw err instanceof RoutingError ? err : unavailable(`${what} failed`, err);
    }
  }
}
