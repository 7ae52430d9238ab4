import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Mailbox, MailboxEntry, MailboxOptions } from "../../backends/mailbox.ts";
import type { Urn } from "../../core/urn.ts";
import { manualClock, type Fixture, type FixtureFactory, type ManualClock } from "./fixture.ts";

export interface MailboxContractOptions extends MailboxOptions {
  /** The clock the de-duplication window is measured with. */
  readonly now: () => number;
}

export interface MailboxContractCaps {
  /** The implementation measures the de-duplication window with the injected clock. */
  readonly injectableClock: boolean;
}

const ALICE = "urn:sm:user:alice" as Urn;
const BOB = "urn:sm:user:bob" as Urn;
const TTL_MS = 1_000;
/**
 * An implementation on a real clock (no injectable clock) gets a window no test here outlives, so a
 * slow machine cannot end it mid-test; its expiry is tested by its own real-time test.
 */
const REAL_CLOCK_TTL_MS = 60_000;

/** A retention no test outlives: every queuedAt, however small, is live. */
export const NO_RETENTION = Number.MAX_SAFE_INTEGER;

export function mailboxEntry(recipientId: Urn, messageId: string, priority = 0, queuedAt = 1_700_000_000_000): MailboxEntry {
  return {
    recipientId,
    messageId,
    priority,
    envelope: JSON.stringify({ messageId, ciphertext: `ü-😀-\u2028-${messageId}` }),
    queuedAt,
  };
}

/** Every guarantee of `Mailbox` (backends/mailbox.ts), for one implementation. */
export function describeMailboxContract(
  name: string,
  factory: FixtureFactory<Mailbox, MailboxContractOptions>,
  caps: MailboxContractCaps = { injectableClock: true },
): void {
  describe(`Mailbox contract: ${name}`, () => {
    let fx: Fixture<Mailbox, MailboxContractOptions>;
    let clock: ManualClock;
    let mailbox: Mailbox;
    beforeEach(async () => {
      fx = await factory();
      clock = manualClock();
      // Retention is the life-cycle contract's (mailbox-lifecycle.contract.ts); here queuedAt values are plain labels.
      mailbox = await fx.open({ dedupTtlMs: caps.injectableClock ? TTL_MS : REAL_CLOCK_TTL_MS, now: clock.now, retentionMs: NO_RETENTION });
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("stores an entry and returns it unchanged", async () => {
      const entry = mailboxEntry(ALICE, "m1", 3, 1_700_000_000_123);
      expect(await mailbox.store(entry)).toBe("stored");
      expect(await mailbox.fetch(ALICE, 10)).toEqual([entry]);
      expect(await mailbox.fetch(BOB, 10)).toEqual([]);
    });

    it("resolves a repeated store as duplicate and changes nothing", async () => {
      const entry = mailboxEntry(ALICE, "m1", 1);
      expect(await mailbox.store(entry)).toBe("stored");
      expect(await mailbox.store({ ...entry, priority: 9, envelope: '{"other":true}' })).toBe("duplicate");
      expect(await mailbox.fetch(ALICE, 10)).toEqual([entry]);
      expect(await mailbox.depth(ALICE)).toEqual({ count: 1, oldestQueuedAt: entry.queuedAt });
    });

    it("stores exactly one of two identical stores issued together", async () => {
      const entry = mailboxEntry(ALICE, "m1");
      const outcomes = await Promise.all([mailbox.store(entry), mailbox.store(entry), mailbox.store(entry)]);
      expect(outcomes.sort()).toEqual(["duplicate", "duplicate", "stored"]);
      expect(await mailbox.fetch(ALICE, 10)).toHaveLength(1);
    });

    it("still de-duplicates after the message was acked", async () => {
      const entry = mailboxEntry(ALICE, "m1");
      await mailbox.store(entry);
      expect(await mailbox.ack(ALICE, ["m1"])).toBe(1);
      expect(await mailbox.store(entry)).toBe("duplicate");
      expect(await mailbox.fetch(ALICE, 10)).toEqual([]);
    });

    it("de-duplicates per recipient", async () => {
      expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("stored");
      expect(await mailbox.store(mailboxEntry(BOB, "m1"))).toBe("stored");
      expect(await mailbox.ack(BOB, ["m1"])).toBe(1);
      expect(await mailbox.fetch(ALICE, 10)).toEqual([mailboxEntry(ALICE, "m1")]);
    });

    it.runIf(caps.injectableClock)("forgets a pair once the de-duplication window has passed", async () => {
      await mailbox.store(mailboxEntry(ALICE, "m1"));
      await mailbox.ack(ALICE, ["m1"]);
      clock.advance(TTL_MS / 2);
      expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("duplicate");
      clock.advance(TTL_MS);
      expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("stored");
      expect(await mailbox.fetch(ALICE, 10)).toHaveLength(1);
      expect(await mailbox.store(mailboxEntry(ALICE, "m1"))).toBe("duplicate");
    });

    it("fetches high priority (>= 5) first, then in store order", async () => {
      const priorities: Array<[string, number]> = [
        ["a", 1],
        ["b", 9],
        ["c", 5],
        ["d", 0],
        ["e", 7],
        ["f", 4],
        ["g", 5],
      ];
      // queuedAt deliberately not in store order: store order decides.
      for (const [id, p] of priorities) await mailbox.store(mailboxEntry(ALICE, id, p, 1_700_000_000_000 - p));
      const fetched = await mailbox.fetch(ALICE, 10);
      expect(fetched.map((e) => e.messageId)).toEqual(["b", "c", "e", "g", "a", "d", "f"]);
    });

    it("keeps store order for entries stored together", async () => {
      await Promise.all(["a", "b", "c", "d"].map((id) => mailbox.store(mailboxEntry(ALICE, id))));
      expect((await mailbox.fetch(ALICE, 10)).map((e) => e.messageId)).toEqual(["a", "b", "c", "d"]);
    });

    it("fetch does not remove and honours limit", async () => {
      for (const id of ["a", "b", "c"]) await mailbox.store(mailboxEntry(ALICE, id));
      expect((await mailbox.fetch(ALICE, 2)).map((e) => e.messageId)).toEqual(["a", "b"]);
      expect((await mailbox.fetch(ALICE, 2)).map((e) => e.messageId)).toEqual(["a", "b"]);
      expect((await mailbox.fetch(ALICE, 1)).map((e) => e.messageId)).toEqual(["a"]);
      expect(await mailbox.fetch(ALICE, 10)).toHaveLength(3);
    });

    it("ack removes, counts only what it removed, and is idempotent", async () => {
      for (const id of ["a", "b", "c"]) await mailbox.store(mailboxEntry(ALICE, id));
      expect(await mailbox.ack(ALICE, ["a", "c", "unknown"])).toBe(2);
      expect(await mailbox.ack(ALICE, ["a", "c"])).toBe(0);
      expect(await mailbox.ack(ALICE, [])).toBe(0);
      expect((await mailbox.fetch(ALICE, 10)).map((e) => e.messageId)).toEqual(["b"]);
    });

    it("ack ignores other recipients' messages", async () => {
      await mailbox.store(mailboxEntry(ALICE, "a"));
      expect(await mailbox.ack(BOB, ["a"])).toBe(0);
      expect(await mailbox.fetch(ALICE, 10)).toHaveLength(1);
    });

    it("reports depth: count and oldest queuedAt", async () => {
      expect(await mailbox.depth(ALICE)).toEqual({ count: 0, oldestQueuedAt: undefined });
      await mailbox.store(mailboxEntry(ALICE, "a", 0, 300));
      await mailbox.store(mailboxEntry(ALICE, "b", 9, 100));
      await mailbox.store(mailboxEntry(ALICE, "c", 0, 200));
      await mailbox.store(mailboxEntry(BOB, "z", 0, 50));
      expect(await mailbox.depth(ALICE)).toEqual({ count: 3, oldestQueuedAt: 100 });
      await mailbox.ack(ALICE, ["b"]);
      expect(await mailbox.depth(ALICE)).toEqual({ count: 2, oldestQueuedAt: 200 });
      await mailbox.ack(ALICE, ["a", "c"]);
      expect(await mailbox.depth(ALICE)).toEqual({ count: 0, oldestQueuedAt: undefined });
    });

    it("is ready while open", async () => {
      expect(await mailbox.ready()).toBe(true);
      await mailbox.close();
      expect(await mailbox.ready()).toBe(false);
    });
  });
}
