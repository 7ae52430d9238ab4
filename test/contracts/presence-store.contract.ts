import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PresenceEntry, PresenceOptions, PresenceStore } from "../../backends/presence-store.ts";
import type { Urn } from "../../core/urn.ts";
import { manualClock, type Fixture, type FixtureFactory, type ManualClock } from "./fixture.ts";

export interface PresenceContractOptions extends PresenceOptions {
  /** The clock expiry is measured with. */
  readonly now: () => number;
}

export interface PresenceContractCaps {
  /** The implementation measures the TTL with the injected clock. */
  readonly injectableClock: boolean;
}

const ALICE = "urn:sm:user:alice" as Urn;
const BOB = "urn:sm:user:bob" as Urn;
const TTL_MS = 1_000;
/**
 * An implementation on a real clock (no injectable clock) gets a TTL no test here outlives, so a
 * slow machine cannot expire entries mid-test; its expiry is tested by its own real-time test.
 */
const REAL_CLOCK_TTL_MS = 60_000;

function session(sessionId: string, instanceId: string, protocol: PresenceEntry["protocol"] = "ws"): PresenceEntry {
  return { sessionId, instanceId, protocol, connectedAt: 1_700_000_000_000 };
}

function bySession(entries: PresenceEntry[]): PresenceEntry[] {
  return [...entries].sort((a, b) => (a.sessionId < b.sessionId ? -1 : 1));
}

/** Every guarantee of `PresenceStore` (backends/presence-store.ts), for one implementation. */
export function describePresenceStoreContract(
  name: string,
  factory: FixtureFactory<PresenceStore, PresenceContractOptions>,
  caps: PresenceContractCaps = { injectableClock: true },
): void {
  describe(`PresenceStore contract: ${name}`, () => {
    let fx: Fixture<PresenceStore, PresenceContractOptions>;
    let clock: ManualClock;
    let presence: PresenceStore;
    beforeEach(async () => {
      fx = await factory();
      clock = manualClock();
      presence = await fx.open({ ttlMs: caps.injectableClock ? TTL_MS : REAL_CLOCK_TTL_MS, now: clock.now });
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("release removes every entry of the instance at once, and only that instance's", async () => {
      await presence.add(ALICE, session("s1", "node-a"));
      await presence.add(ALICE, session("s2", "node-b"));
      await presence.add(BOB, session("s3", "node-a"));
      await presence.release("node-a");
      expect(await presence.get(ALICE)).toEqual([session("s2", "node-b")]);
      expect(await presence.get(BOB)).toEqual([]);
      await presence.release("node-a"); // idempotent
      expect(await presence.get(ALICE)).toEqual([session("s2", "node-b")]);
    });

    it("holds several sessions per identity, apart from other identities", async () => {
      await presence.add(ALICE, session("s1", "node-a", "ws"));
      await presence.add(ALICE, session("s2", "node-b", "mqtt"));
      await presence.add(BOB, session("s3", "node-a"));
      expect(bySession(await presence.get(ALICE))).toEqual([session("s1", "node-a", "ws"), session("s2", "node-b", "mqtt")]);
      expect(await presence.get(BOB)).toEqual([session("s3", "node-a")]);
      expect(await presence.get("urn:sm:user:nobody" as Urn)).toEqual([]);
    });

    it("adding a session id again replaces it", async () => {
      await presence.add(ALICE, session("s1", "node-a", "ws"));
      await presence.add(ALICE, session("s1", "node-b", "mqtt"));
      expect(await presence.get(ALICE)).toEqual([session("s1", "node-b", "mqtt")]);
    });

    it("remove takes one session away, idempotently", async () => {
      await presence.add(ALICE, session("s1", "node-a"));
      await presence.add(ALICE, session("s2", "node-a"));
      await presence.remove(ALICE, "s1");
      await presence.remove(ALICE, "s1");
      await presence.remove(BOB, "s2");
      await presence.remove(ALICE, "never-added");
      expect(await presence.get(ALICE)).toEqual([session("s2", "node-a")]);
    });

    it.runIf(caps.injectableClock)("expires entries one TTL after their instance's last heartbeat", async () => {
      await presence.add(ALICE, session("s1", "node-a"));
      await presence.add(ALICE, session("s2", "node-b"));
      clock.advance(TTL_MS * 0.6);
      await presence.heartbeat("node-a");
      expect(bySession(await presence.get(ALICE)).map((e) => e.sessionId)).toEqual(["s1", "s2"]);
      clock.advance(TTL_MS * 0.6);
      // node-b never beat: gone; node-a beat 0.6 TTL ago: alive.
      expect((await presence.get(ALICE)).map((e) => e.sessionId)).toEqual(["s1"]);
      clock.advance(TTL_MS * 0.6);
      expect(await presence.get(ALICE)).toEqual([]);
    });

    it.runIf(caps.injectableClock)("a heartbeat keeps every entry of the instance alive", async () => {
      await presence.add(ALICE, session("s1", "node-a"));
      await presence.add(BOB, session("s2", "node-a"));
      for (let i = 0; i < 5; i++) {
        clock.advance(TTL_MS * 0.5);
        await presence.heartbeat("node-a");
      }
      expect(await presence.get(ALICE)).toHaveLength(1);
      expect(await presence.get(BOB)).toHaveLength(1);
    });

    it("is ready while open", async () => {
      expect(await presence.ready()).toBe(true);
      await presence.close();
      expect(await presence.ready()).toBe(false);
    });
  });
}
