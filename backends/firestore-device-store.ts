import { Firestore, type DocumentReference, type DocumentSnapshot, type Transaction } from "@google-cloud/firestore";
import type { Urn } from "../core/urn.ts";
import type { DeviceStore, DeviceToken, PushPlatform } from "./device-store.ts";
import { docId, openFirestore, type FirestoreConnectionOptions } from "./firestore-client.ts";
import { guarded } from "./guarded.ts";
import { byRegistration } from "./memory-device-store.ts";
import { readyWithin } from "./readiness.ts";

export interface FirestoreDeviceStoreOptions {
  /** A client the caller owns (shared with other roles; never closed here), or how to open one (closed on `close`). */
  readonly firestore: Firestore | FirestoreConnectionOptions;
  /** Clock for `registeredAt`; default Date.now. */
  readonly now?: () => number;
}

/**
 * Push tokens in Firestore:
 * - `devices/<urn>`: {owner, tokens: [{token, platform, registeredAt}]}, what `list` reads (one document).
 * - `deviceTokens/<token>`: {token, owner, platform, registeredAt}, the reverse index that makes a token
 *   belong to one identity: registering it elsewhere moves it, `removeToken` finds its holder.
 * Every write changes both in one transaction, committed (durable) before it resolves.
 */
export function createFirestoreDeviceStore(opts: FirestoreDeviceStoreOptions): DeviceStore {
  return new FirestoreDeviceStore(opts);
}

interface TokenDoc {
  readonly token: string;
  readonly owner: string;
  readonly platform: PushPlatform;
  readonly registeredAt: number;
}

function tokensOf(snap: DocumentSnapshot | undefined): DeviceToken[] {
  const raw: unknown = snap?.exists ? snap.get("tokens") : undefined;
  if (!Array.isArray(raw)) return [];
  return raw.filter((t): t is DeviceToken => typeof t === "object" && t !== null && typeof (t as DeviceToken).token === "string");
}

class FirestoreDeviceStore implements DeviceStore {
  #db: Firestore;
  #owned: boolean;
  #now: () => number;
  #open = true;

  constructor(opts: FirestoreDeviceStoreOptions) {
    this.#owned = !(opts.firestore instanceof Firestore);
    this.#db = opts.firestore instanceof Firestore ? opts.firestore : openFirestore(opts.firestore);
    this.#now = opts.now ?? Date.now;
  }

  register(owner: Urn, token: string, platform: PushPlatform): Promise<void> {
    return this.#guard("device register", async () => {
      const registeredAt = this.#now();
      await this.#db.runTransaction(async (tx) => {
        const tokenRef = this.#tokenRef(token);
        const held = await tx.get(tokenRef);
        const previous = held.exists ? (held.get("owner") as string) : undefined;
        const refs = [this.#ownerRef(owner)];
        if (previous !== undefined && previous !== owner) refs.push(this.#ownerRef(previous as Urn));
        // Every read before the first write, as transactions require.
        const [mine, theirs] = await tx.getAll(...refs);
        tx.set(tokenRef, { token, owner, platform, registeredAt } satisfies TokenDoc);
        this.#writeTokens(tx, mine.ref, owner, [...tokensOf(mine).filter((t) => t.token !== token), { token, platform, registeredAt }]);
        if (theirs !== undefined && previous !== undefined) {
          this.#writeTokens(
            tx,
            theirs.ref,
            previous,
            tokensOf(theirs).filter((t) => t.token !== token),
          );
        }
      });
    });
  }

  unregister(owner: Urn, token: string): Promise<void> {
    return this.#guard("device unregister", async () => {
      await this.#db.runTransaction(async (tx) => {
        const [held, mine] = await tx.getAll(this.#tokenRef(token), this.#ownerRef(owner));
        if (!held.exists || held.get("owner") !== owner) return;
        tx.delete(held.ref);
        this.#writeTokens(
          tx,
          mine.ref,
          owner,
          tokensOf(mine).filter((t) => t.token !== token),
        );
      });
    });
  }

  removeToken(token: string): Promise<void> {
    return this.#guard("device remove", async () => {
      await this.#db.runTransaction(async (tx) => {
        const held = await tx.get(this.#tokenRef(token));
        if (!held.exists) return;
        const owner = held.get("owner") as string;
        const theirs = await tx.get(this.#ownerRef(owner as Urn));
        tx.delete(held.ref);
        this.#writeTokens(
          tx,
          theirs.ref,
          owner,
          tokensOf(theirs).filter((t) => t.token !== token),
        );
      });
    });
  }

  list(owner: Urn): Promise<DeviceToken[]> {
    return this.#guard("device list", async () => {
      const snap = await this.#ownerRef(owner).get();
      return tokensOf(snap)
        .map((t) => ({ token: t.token, platform: t.platform, registeredAt: t.registeredAt }))
        .sort(byRegistration);
    });
  }

  /** The owner's list document and every token document it names, in one transaction. */
  purge(owner: Urn): Promise<number> {
    return this.#guard("device purge", async () =>
      this.#db.runTransaction(async (tx) => {
        const mine = await tx.get(this.#ownerRef(owner));
        const tokens = tokensOf(mine);
        const held = tokens.length > 0 ? await tx.getAll(...tokens.map((t) => this.#tokenRef(t.token))) : [];
        let removed = 0;
        for (const h of held) {
          if (!h.exists || h.get("owner") !== owner) continue;
          tx.delete(h.ref);
          removed++;
        }
        if (mine.exists) tx.delete(mine.ref);
        return removed;
      }),
    );
  }

  async ready(): Promise<boolean> {
    if (!this.#open) return false;
    return readyWithin(this.#db.collection("devices").limit(1).get());
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    if (this.#owned) await this.#db.terminate().catch(() => undefined);
  }

  /** An identity's token list; its document goes away with its last token. */
  #writeTokens(tx: Transaction, ref: DocumentReference, owner: string, tokens: DeviceToken[]): void {
    if (tokens.length === 0) tx.delete(ref);
    else tx.set(ref, { owner, tokens });
  }

  #ownerRef(owner: Urn): DocumentReference {
    return this.#db.collection("devices").doc(docId(owner));
  }

  #tokenRef(token: string): DocumentReference {
    return this.#db.collection("deviceTokens").doc(docId(token));
  }

  #guard<T>(what: string, op: () => Promise<T>): Promise<T> {
    return guarded(what, this.#open, op);
  }
}
