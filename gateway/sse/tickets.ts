import { createHash, randomBytes } from "node:crypto";
import type { Principal } from "../../auth/verifier.ts";
import type { TicketStore } from "../../backends/ticket-store.ts";
import { RoutingError } from "../../core/errors.ts";

/** A ticket's lifetime (the contract: `{"ticket": "...", "expiresIn": 30}`). */
export const TICKET_TTL_SECONDS = 30;

export interface TicketsOptions {
  readonly store: TicketStore;
  /** The clock validity is measured with (tests move it by hand). */
  readonly now?: () => number;
}

/**
 * Issues and redeems `GET /events` tickets: 32 random bytes, base64url. The store is keyed by the
 * ticket's SHA-256, so neither the store nor any log line holds a usable ticket.
 */
export function createTickets({ store, now = Date.now }: TicketsOptions) {
  const keyOf = (ticket: string): string => createHash("sha256").update(ticket).digest("base64url");
  return {
    async issue(principal: Principal): Promise<{ ticket: string; expiresIn: number }> {
      const ticket = randomBytes(32).toString("base64url");
      await store.put(
        keyOf(ticket),
        principal.expiresAt === undefined ? { identity: principal.identity } : { identity: principal.identity, tokenExpiresAt: principal.expiresAt },
        now() + TICKET_TTL_SECONDS * 1000,
      );
      return { ticket, expiresIn: TICKET_TTL_SECONDS };
    },
    /** The principal a ticket stands for, once; TOKEN_INVALID for an unknown, used or expired one. */
    async redeem(ticket: string): Promise<Principal> {
      const grant = ticket.length > 0 && ticket.length <= 128 ? await store.take(keyOf(ticket), now()) : undefined;
      if (grant === undefined) throw new RoutingError("TOKEN_INVALID", "the ticket is unknown, used or expired; get a new one from POST /tickets");
      return { identity: grant.identity, expiresAt: grant.tokenExpiresAt };
    },
  };
}

export type Tickets = ReturnType<typeof createTickets>;
