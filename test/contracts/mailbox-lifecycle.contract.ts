import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Mailbox, MailboxOptions } from "../../backends/mailbox.ts";
import type { Urn } from "../../core/urn.ts";
import { startRetentionSweep } from "../../lifecycle/retention.ts";
import { manualClock, type Fixture, type ManualClock } from "./fixture.ts";
import { mailboxEntry } from "./mailbox.contract.ts";

export interface LifecycleOptions extends MailboxOptions {
  readonly retentionMs: number;
  /** The clock of the retention cutoff. */
  readonly now: () => number;
}

/** A mailbox fixture that can also look at the raw store. */
export interface LifecycleFixture extends Fixture<Mailbox, LifecycleOptions> {
  /** Message ids physically stored for `urn` (rows, hash fields, documents), whatever fetch shows. */
  rawMessageIds?(urn: Urn): Promise<string[]>;
  /** Every place (table, key, document) that still names `urn`: empty once it is purged. */
  residue?(urn: Urn): Promise<string[]>;
}

export interface LifecycleCaps {
  /** Expired messages the bulk test seeds (10,000 unless a backend's emulator makes that unreasonable). */
  readonly bulk?: number;
}

const ALICE = "urn:sm:user:alice" as Urn;
const BOB = "urn:sm:user:bob" as Urn;
const CAROL = "urn:sm:user:carol" as Urn;
/** "A few seconds", on the injected clock. */
const RETENTION_MS = 3_000;
const DEDUP_MS = 3_600_000;

function bytesOf(urn: Urn, ids: readonly string[]): number {
  return ids.reduce((sum, id) => sum + Buffer.byteLength(mailboxEntry(urn, id).envelope), 0);
}

async function pool<T>(items: readonly T[], width: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/** Retention, usage, largest and purge (backends/mailbox.ts), for one implementation. */
export function describeMailboxLifecycleContract(name: string, factory: () => Promise<LifecycleFixture>, caps: LifecycleCaps = {}): void {
  describe(`Mailbox life cycle contract: ${name}`, () => {
    let fx: LifecycleFixture;
    let clock: ManualClock;
    let mailbox: Mailbox;
    const expiredSeen: number[] = [];
    beforeEach(async () => {
      fx = await factory();
      clock = manualClock(Date.now());
      expiredSeen.length = 0;
      mailbox = await fx.open({ dedupTtlMs: DEDUP_MS, retentionMs: RETENTION_MS, now: clock.now, onExpired: (n) => expiredSeen.push(n) });
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("never fetches a message past the retention, and expire removes it from the store", async () => {
      await mailbox.store(mailboxEntry(ALICE, "old", 9, clock.now()));
      clock.advance(2_000);
      await mailbox.store(mailboxEntry(ALICE, "new", 0, clock.now()));
      expect((await mailbox.fetch(ALICE, 10)).map((e) => e.messageId)).toEqual(["old", "new"]);
      clock.advance(1_000);
      expect((await mailbox.fetch(ALICE, 10)).map((e) => e.messageId)).toEqual(["new"]);
      expect(await mailbox.depth(ALICE)).toMatchObject({ count: 1 });
      await mailbox.expire(100);
      expect(await mailbox.expire(100)).toBe(0);
      expect(await mailbox.usage(ALICE)).toEqual({ count: 1, bytes: bytesOf(ALICE, ["new"]) });
      if (fx.rawMessageIds) expect(await fx.rawMessageIds(ALICE)).toEqual(["new"]);
      // Still de-duplicated: the record outlives the message (ROUTING_DEDUP_TTL_SECONDS >= retention).
      expect(await mailbox.store(mailboxEntry(ALICE, "old", 9, clock.now()))).toBe("duplicate");
      clock.advance(RETENTION_MS);
      expect(await mailbox.fetch(ALICE, 10)).toEqual([]);
      await mailbox.expire(100);
      expect(await mailbox.usage(ALICE)).toEqual({ count: 0, bytes: 0 });
      if (fx.rawMessageIds) expect(await fx.rawMessageIds(ALICE)).toEqual([]);
    });

    it("expires in calls of at most `limit`, across recipients, and keeps what is young", async () => {
      const old = clock.now();
      for (const urn of [ALICE, BOB, CAROL]) for (let i = 0; i < 7; i++) await mailbox.store(mailboxEntry(urn, `o${i}`, 0, old));
      clock.advance(RETENTION_MS);
      await mailbox.store(mailboxEntry(BOB, "young", 0, clock.now()));
      expect(await mailbox.expire(10)).toBe(10);
      expect(await mailbox.expire(100)).toBe(11);
      expect(await mailbox.expire(100)).toBe(0);
      for (const urn of [ALICE, CAROL]) expect(await mailbox.usage(urn)).toEqual({ count: 0, bytes: 0 });
      expect(await mailbox.usage(BOB)).toEqual({ count: 1, bytes: bytesOf(BOB, ["young"]) });
      expect((await mailbox.fetch(BOB, 10)).map((e) => e.messageId)).toEqual(["young"]);
      expect(await mailbox.largest(5)).toEqual([1]);
    });

    it("keeps usage (messages, envelope bytes) with every store, duplicate, ack and purge; largest counts only", async () => {
      expect(await mailbox.usage(ALICE)).toEqual({ count: 0, bytes: 0 });
      for (const id of ["a1", "a2", "a3"]) await mailbox.store(mailboxEntry(ALICE, id, 0, clock.now()));
      await mailbox.store(mailboxEntry(ALICE, "a1", 0, clock.now()));
      await mailbox.store(mailboxEntry(BOB, "b1", 0, clock.now()));
      expect(await mailbox.usage(ALICE)).toEqual({ count: 3, bytes: bytesOf(ALICE, ["a1", "a2", "a3"]) });
      expect(await mailbox.largest(5)).toEqual([3, 1]);
      expect(await mailbox.largest(1)).toEqual([3]);
      await mailbox.ack(ALICE, ["a2", "nope"]);
      expect(await mailbox.usage(ALICE)).toEqual({ count: 2, bytes: bytesOf(ALICE, ["a1", "a3"]) });
      await mailbox.ack(ALICE, ["a1", "a3"]);
      expect(await mailbox.usage(ALICE)).toEqual({ count: 0, bytes: 0 });
      expect(await mailbox.largest(5)).toEqual([1]);
    });

    it("purges a recipient's messages and de-duplication records, idempotently; a later store is new", async () => {
      for (const id of ["a1", "a2", "a3"]) await mailbox.store(mailboxEntry(ALICE, id, 0, clock.now()));
      await mailbox.ack(ALICE, ["a1"]);
      await mailbox.store(mailboxEntry(BOB, "b1", 0, clock.now()));
      expect(await mailbox.purge(ALICE)).toEqual({ messages: 2, dedup: 3 });
      expect(await mailbox.fetch(ALICE, 10)).toEqual([]);
      expect(await mailbox.usage(ALICE)).toEqual({ count: 0, bytes: 0 });
      expect(await mailbox.purge(ALICE)).toEqual({ messages: 0, dedup: 0 });
      if (fx.residue) expect(await fx.residue(ALICE)).toEqual([]);
      // Bob is untouched.
      expect((await mailbox.fetch(BOB, 10)).map((e) => e.messageId)).toEqual(["b1"]);
      expect(await mailbox.store(mailboxEntry(BOB, "b1", 0, clock.now()))).toBe("duplicate");
      // Forgotten: the same id is a new message now.
      expect(await mailbox.store(mailboxEntry(ALICE, "a1", 0, clock.now()))).toBe("stored");
      expect((await mailbox.fetch(ALICE, 10)).map((e) => e.messageId)).toEqual(["a1"]);
      expect(await mailbox.purge(ALICE)).toEqual({ messages: 1, dedup: 1 });
      if (fx.residue) expect(await fx.residue(ALICE)).toEqual([]);
    });

    it("never leaves a message half-stored when stores run during a purge", async () => {
      const ids = Array.from({ length: 40 }, (_, i) => `m${i}`);
      for (const id of ids.slice(0, 20)) await mailbox.store(mailboxEntry(ALICE, id, 0, clock.now()));
      await Promise.all([mailbox.purge(ALICE), pool(ids.slice(20), 5, (id) => mailbox.store(mailboxEntry(ALICE, id, 0, clock.now())))]);
      const kept = new Set((await mailbox.fetch(ALICE, 100)).map((e) => e.messageId));
      for (const id of ids.slice(0, 20)) expect(kept.has(id)).toBe(false);
      // Every id either survived whole (message kept) or went whole (storing it again is new).
      for (const id of ids) {
        const again = await mailbox.store(mailboxEntry(ALICE, id, 0, clock.now()));
        expect({ id, outcome: again }).toEqual({ id, outcome: kept.has(id) ? "duplicate" : "stored" });
      }
      expect(await mailbox.usage(ALICE)).toMatchObject({ count: ids.length });
    });

    it(`removes ${caps.bulk ?? 10_000} expired messages while sends and fetches go on (latencies printed)`, async () => {
      const bulk = caps.bulk ?? 10_000;
      const old = clock.now();
      const recipients = Array.from({ length: 50 }, (_, i) => `urn:sm:user:old${i}` as Urn);
      const seeded = Array.from({ length: bulk }, (_, i) => mailboxEntry(recipients[i % recipients.length], `x${i}`, 0, old));
      const seedStart = Date.now();
      await pool(seeded, 64, (e) => mailbox.store(e));
      const seedMs = Date.now() - seedStart;
      // Baseline in the same run: the same rounds with nothing to sweep yet (the seeded messages are still live).
      const baseline: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await mailbox.store(mailboxEntry(BOB, `base${i}`, 0, clock.now()));
        const t1 = performance.now();
        const got = await mailbox.fetch(BOB, 50);
        const t2 = performance.now();
        await mailbox.ack(
          BOB,
          got.map((e) => e.messageId),
        );
        baseline.push(t1 - t0, t2 - t1);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      baseline.sort((a, b) => a - b);
      clock.advance(RETENTION_MS);
      const sweep = startRetentionSweep({ mailbox, intervalMs: 3_600_000, onExpired: () => undefined, log: { warn: () => undefined } });
      const latencies: number[] = [];
      let live = 0;
      let sweeping = true;
      const swept = sweep.sweep().finally(() => {
        sweeping = false;
      });
      const started = Date.now();
      // Sends and fetches of a live recipient for as long as the sweep runs (and at least 20 of each).
      while (sweeping || live < 20) {
        const t0 = performance.now();
        await mailbox.store(mailboxEntry(ALICE, `live${live}`, 0, clock.now()));
        const t1 = performance.now();
        const fetched = await mailbox.fetch(ALICE, 50);
        const t2 = performance.now();
        latencies.push(t1 - t0, t2 - t1);
        expect(fetched.length).toBeGreaterThan(0);
        await mailbox.ack(
          ALICE,
          fetched.map((e) => e.messageId),
        );
        live++;
        // Requests arrive from I/O: let the event loop turn (an in-memory store never would).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const removed = await swept;
      const sweepMs = Date.now() - started;
      await sweep.stop();
      latencies.sort((a, b) => a - b);
      const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(2);
      console.log(
        `[${name}] seeded ${bulk} expired messages in ${seedMs} ms; swept ${removed} in ${sweepMs} ms while ${live} send+fetch+ack rounds ran: ` +
          `request latency p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${latencies[latencies.length - 1].toFixed(2)} ms (${latencies.length} requests); ` +
          `baseline without a sweep, same run: p50 ${baseline[Math.floor(baseline.length / 2)].toFixed(2)} ms, max ${baseline[baseline.length - 1].toFixed(2)} ms`,
      );
      expect(removed).toBe(bulk);
      for (const urn of recipients.slice(0, 5)) expect(await mailbox.usage(urn)).toEqual({ count: 0, bytes: 0 });
      if (fx.rawMessageIds) for (const urn of recipients.slice(0, 5)) expect(await fx.rawMessageIds(urn)).toEqual([]);
      expect(await mailbox.expire(10)).toBe(0);
    }, 180_000);
  });
}
