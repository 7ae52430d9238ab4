import type { Urn } from "../core/urn.ts";

/** What a ticket stands for: the identity it was issued to and when that identity's token expires. */
export interface TicketGrant {
  readonly identity: Urn;
  /** Epoch ms when the token that asked for the ticket expires (undefined: it does not). */
  readonly tokenExpiresAt?: number;
}

/**
 * Short-lived single-use tickets (`POST /tickets`, redeemed by `GET /events?ticket=`), keyed by a
 * hash of the ticket: the store never holds, and no log line ever names, a ticket itself.
 *
 * Guarantees every implementation keeps:
 * - `put` resolves only once every node sharing the store would find the ticket (memory: this
 *   process; SQLite: this node, durable; Redis: the whole cluster).
 * - `take` is atomic: of any number of concurrent or later `take`s of one key, on any node sharing
 *   the store, at most one resolves the grant; every other resolves undefined. A ticket is spent by
 *   its first `take` even when that one finds it expired.
 * - A grant is never returned once `now` (the caller's clock, so expiry is testable without
 *   waiting) has reached its `expiresAt`. Expired keys are removed eventually, never kept without bound.
 * - Failures reject with BACKEND_UNAVAILABLE; nothing is granted then.
 */
export interface TicketStore {
  put(key: string, grant: TicketGrant, expiresAt: number): Promise<void>;
  take(key: string, now: number): Promise<TicketGrant | undefined>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

/** The stored form of a grant (JSON in SQLite and Redis). */
export interface StoredTicket extends TicketGrant {
  readonly expiresAt: number;
}

export function parseStoredTicket(raw: string | null | undefined): StoredTicket | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<StoredTicket>;
    if (typeof v.identity !== "string" || typeof v.expiresAt !== "number") return undefined;
    if (v.tokenExpiresAt !== undefined && typeof v.tokenExpiresAt !== "number") return undefined;
    return { identity: v.identity as Urn, expiresAt: v.expiresAt, tokenExpiresAt: v.tokenExpiresAt };
  } catch {
    return undefined;
  }
}

/** The grant a stored ticket yields at `now`, or undefined once it has expired. */
export function grantAt(stored: StoredTicket | undefined, now: number): TicketGrant | undefined {
  if (stored === undefined || now >= stored.expiresAt) return undefined;
  return stored.tokenExpiresAt === undefined ? { identity: stored.identity } : { identity: stored.identity, tokenExpiresAt: stored.tokenExpiresAt };
}
