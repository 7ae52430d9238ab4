import type { StoredTicket, TicketGrant, TicketStore } from "./ticket-store.ts";
import { grantAt } from "./ticket-store.ts";

/** Tickets in this process only: one node, or tests. Expired keys are swept on every put. */
export function createMemoryTicketStore(): TicketStore {
  const tickets = new Map<string, StoredTicket>();
  let open = true;
  return {
    async put(key, grant: TicketGrant, expiresAt) {
      if (!open) throw new Error("ticket store closed");
      const now = Date.now();
      // Insertion order is roughly expiry order: stop at the first live one.
      for (const [k, t] of tickets) {
        if (t.expiresAt > now) break;
        tickets.delete(k);
      }
      tickets.set(key, { ...grant, expiresAt });
    },
    async take(key, now) {
      const stored = tickets.get(key);
      tickets.delete(key);
      return grantAt(stored, now);
    },
    ready: async () => open,
    async close() {
      open = false;
      tickets.clear();
    },
  };
}
