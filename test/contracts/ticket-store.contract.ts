import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TicketStore } from "../../backends/ticket-store.ts";
import type { Urn } from "../../core/urn.ts";
import { manualClock, type Fixture, type FixtureFactory } from "./fixture.ts";

export interface TicketContractCaps {
  /** Two `open`s share the storage, as two nodes of a cluster do (memory: no). */
  readonly shared: boolean;
}

const ALICE = "urn:sm:user:alice" as Urn;
const TTL_MS = 30_000;

/** Every guarantee of `TicketStore` (backends/ticket-store.ts), for one implementation. */
export function describeTicketStoreContract(name: string, factory: FixtureFactory<TicketStore, void>, caps: TicketContractCaps): void {
  describe(`TicketStore contract: ${name}`, () => {
    let fx: Fixture<TicketStore, void>;
    let store: TicketStore;
    beforeEach(async () => {
      fx = await factory();
      store = await fx.open();
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("a ticket is granted once, with its identity and token expiry; the second take finds nothing", async () => {
      const clock = manualClock(Date.now());
      await store.put("k1", { identity: ALICE, tokenExpiresAt: clock.now() + 3_600_000 }, clock.now() + TTL_MS);
      expect(await store.take("k1", clock.now())).toEqual({ identity: ALICE, tokenExpiresAt: clock.now() + 3_600_000 });
      expect(await store.take("k1", clock.now())).toBeUndefined();
    });

    it("an unknown key is refused", async () => {
      expect(await store.take("never-issued", Date.now())).toBeUndefined();
    });

    it("valid until just before its expiry, never at or after it (and spent by the late take)", async () => {
      const clock = manualClock(Date.now());
      await store.put("early", { identity: ALICE }, clock.now() + TTL_MS);
      await store.put("late", { identity: ALICE }, clock.now() + TTL_MS);
      clock.advance(TTL_MS - 1);
      expect(await store.take("early", clock.now())).toEqual({ identity: ALICE });
      clock.advance(1);
      expect(await store.take("late", clock.now())).toBeUndefined();
      // Spent: even a clock set back does not bring it back.
      expect(await store.take("late", clock.now() - TTL_MS)).toBeUndefined();
    });

    it("of many concurrent takes of one ticket exactly one is granted", async () => {
      const now = Date.now();
      await store.put("race", { identity: ALICE }, now + TTL_MS);
      const stores = caps.shared ? [store, await fx.open(), await fx.open()] : [store];
      const takes = await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % stores.length].take("race", now)));
      expect(takes.filter((t) => t !== undefined)).toEqual([{ identity: ALICE }]);
    });

    it.runIf(caps.shared)("a ticket put through one connection is taken once through another (another node)", async () => {
      const now = Date.now();
      const other = await fx.open();
      await store.put("cross", { identity: ALICE }, now + TTL_MS);
      expect(await other.take("cross", now)).toEqual({ identity: ALICE });
      expect(await store.take("cross", now)).toBeUndefined();
    });

    it("tickets are independent: taking one leaves the others", async () => {
      const now = Date.now();
      await store.put("a", { identity: ALICE }, now + TTL_MS);
      await store.put("b", { identity: "urn:sm:user:bob" as Urn }, now + TTL_MS);
      expect(await store.take("a", now)).toEqual({ identity: ALICE });
      expect(await store.take("b", now)).toEqual({ identity: "urn:sm:user:bob" });
    });

    it("reports ready while open, and refuses after close", async () => {
      expect(await store.ready()).toBe(true);
      await store.close();
      expect(await store.ready()).toBe(false);
      await expect(store.put("x", { identity: ALICE }, Date.now() + TTL_MS)).rejects.toThrow();
    });
  });
}
