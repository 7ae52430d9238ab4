import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PushDue, PushQueue } from "../../backends/push-queue.ts";
import type { Urn } from "../../core/urn.ts";
import type { Fixture, FixtureFactory } from "./fixture.ts";

function due(n: number): PushDue {
  return { recipientId: `urn:sm:user:u${n % 3}` as Urn, messageId: `msg-${n}`, priority: n % 10, dueAt: 1_700_000_000_000 + n };
}

/** Every guarantee of `PushQueue` (backends/push-queue.ts), for one implementation. */
export function describePushQueueContract(name: string, factory: FixtureFactory<PushQueue, void>): void {
  describe(`PushQueue contract: ${name}`, () => {
    let fx: Fixture<PushQueue, void>;
    let queue: PushQueue;
    beforeEach(async () => {
      fx = await factory();
      queue = await fx.open();
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("purge removes one recipient's pending pushes and push dead letters", async () => {
      for (let i = 0; i < 6; i++) await queue.enqueue(due(i));
      const [first] = await queue.pending(1);
      await queue.deadLetter(first.seq, "UNREGISTERED");
      // u0: msg-0 (dead), msg-3 (pending).
      expect(await queue.purge("urn:sm:user:u0" as Urn)).toBe(2);
      expect((await queue.pending(10)).map((p) => p.messageId)).toEqual(["msg-1", "msg-2", "msg-4", "msg-5"]);
      expect(await queue.deadLetterCount()).toBe(0);
      expect(await queue.purge("urn:sm:user:u0" as Urn)).toBe(0);
    });

    it("returns pending pushes oldest first, unchanged, without removing them", async () => {
      for (let i = 0; i < 3; i++) await queue.enqueue(due(i));
      const pending = await queue.pending(10);
      expect(pending.map(({ seq: _seq, ...rest }) => rest)).toEqual([due(0), due(1), due(2)]);
      const seqs = pending.map((p) => p.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect(new Set(seqs).size).toBe(3);
      expect(await queue.pending(10)).toEqual(pending);
      expect(await queue.count()).toBe(3);
    });

    it("keeps call order for pushes enqueued together", async () => {
      await Promise.all([0, 1, 2, 3, 4].map((i) => queue.enqueue(due(i))));
      expect((await queue.pending(10)).map((p) => p.messageId)).toEqual(["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"]);
    });

    it("honours limit", async () => {
      for (let i = 0; i < 5; i++) await queue.enqueue(due(i));
      expect((await queue.pending(2)).map((p) => p.messageId)).toEqual(["msg-0", "msg-1"]);
    });

    it("complete removes, idempotently, and ignores unknown seqs", async () => {
      for (let i = 0; i < 4; i++) await queue.enqueue(due(i));
      const [a, b, c, d] = await queue.pending(10);
      await queue.complete([a.seq, c.seq]);
      await queue.complete([a.seq, c.seq, 999_999]);
      await queue.complete([]);
      expect(await queue.pending(10)).toEqual([b, d]);
      expect(await queue.count()).toBe(2);
      await queue.enqueue(due(9));
      const after = await queue.pending(10);
      expect(after.map((p) => p.messageId)).toEqual(["msg-1", "msg-3", "msg-9"]);
      expect(after[2].seq).toBeGreaterThan(d.seq);
    });

    it("deadLetter moves a pending push to the dead letters, newest first, idempotently", async () => {
      for (let i = 0; i < 4; i++) await queue.enqueue(due(i));
      const [a, b, c] = await queue.pending(10);
      const before = Date.now();
      await queue.deadLetter(a.seq, "apns: ServiceUnavailable");
      await queue.deadLetter(c.seq, "fcm: messaging/server-unavailable");
      await queue.deadLetter(a.seq, "again");
      await queue.deadLetter(999_999, "unknown");
      expect((await queue.pending(10)).map((p) => p.messageId)).toEqual(["msg-1", "msg-3"]);
      expect(await queue.count()).toBe(2);
      expect(await queue.deadLetterCount()).toBe(2);
      const dead = await queue.deadLetters(10);
      expect(dead.map(({ deadAt: _deadAt, ...rest }) => rest)).toEqual([
        { ...c, reason: "fcm: messaging/server-unavailable" },
        { ...a, reason: "apns: ServiceUnavailable" },
      ]);
      for (const d of dead) expect(d.deadAt).toBeGreaterThanOrEqual(before);
      expect((await queue.deadLetters(1)).map((d) => d.seq)).toEqual([c.seq]);
      expect(await queue.deadLetters(0)).toEqual([]);
      // A dead-lettered push is not completed twice nor revived by complete.
      await queue.complete([a.seq, b.seq]);
      expect(await queue.deadLetterCount()).toBe(2);
      expect((await queue.pending(10)).map((p) => p.messageId)).toEqual(["msg-3"]);
    });
  });
}
