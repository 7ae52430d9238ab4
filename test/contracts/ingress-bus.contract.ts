import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BusOptions, BusRecord, BusSubscription, Delivery, IngressBus } from "../../backends/ingress-bus.ts";
import { RoutingError } from "../../core/errors.ts";
import type { Urn } from "../../core/urn.ts";
import { createMemoryMailbox } from "../../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../../backends/memory-push-queue.ts";
import type { Mailbox } from "../../backends/mailbox.ts";
import { deadLetterView } from "../../lifecycle/dead-letters.ts";
import { createRouter } from "../../routing/router.ts";
import { createLocalSignalBridge } from "../../routing/signals.ts";
import { sleep, waitFor, type Fixture, type FixtureFactory } from "./fixture.ts";

export interface IngressBusContractOptions {
  /** Records survive closing the bus and opening its storage again (`Fixture.open` a second time). */
  readonly durable: boolean;
  /**
   * What `stats().backlog` and `oldestUnackedAgeMs` cover. "bus" (the default): every unacked record
   * in the bus, whoever published it, delivered or not. "consumer": the records this bus instance's
   * consumer has received and not settled, for a backend whose API exposes no backlog count (Google
   * Pub/Sub: only Cloud Monitoring has it). The suite then checks them against what the consumer holds.
   */
  readonly statsScope?: "bus" | "consumer";
}

const RECIPIENT = "urn:sm:user:bob" as Urn;
/** Long enough that no nacked record comes back during a test that does not wait for it. */
const NO_RETRY: BusOptions = { maxAttempts: 3, retryBaseMs: 60_000 };
const FAST_RETRY: BusOptions = { maxAttempts: 3, retryBaseMs: 5 };

export function busRecord(n: number, over: Partial<BusRecord> = {}): BusRecord {
  const messageId = `msg-${n}`;
  return {
    recipientId: RECIPIENT,
    messageId,
    isEphemeral: n % 2 === 0,
    priority: n % 10,
    // Non-ASCII and separators: the envelope must come back byte-for-byte.
    envelope: JSON.stringify({ messageId, ciphertext: `c1ph3r-${n}-ü-😀-\u2028-"q"` }),
    acceptedAt: 1_700_000_000_000 + n,
    path: "http",
    ...over,
  };
}

interface Collector {
  readonly deliveries: Delivery[];
  readonly sub: BusSubscription;
}

function collect(bus: IngressBus, onDelivery?: (d: Delivery, sub: BusSubscription) => void): Collector {
  const deliveries: Delivery[] = [];
  let sub: BusSubscription | undefined;
  // eslint-disable-next-line prefer-const -- a bus may deliver inside consume(), before `sub` is assigned
  sub = bus.consume((d) => {
    deliveries.push(d);
    if (onDelivery && sub) onDelivery(d, sub);
  });
  return { deliveries, sub };
}

function ids(deliveries: readonly Delivery[]): string[] {
  return deliveries.map((d) => d.record.messageId).sort();
}

/** Every guarantee of `IngressBus` (backends/ingress-bus.ts), for one implementation. */
export function describeIngressBusContract(name: string, factory: FixtureFactory<IngressBus, BusOptions>, caps: IngressBusContractOptions): void {
  const busScope = (caps.statsScope ?? "bus") === "bus";
  describe(`IngressBus contract: ${name}`, () => {
    let fx: Fixture<IngressBus, BusOptions>;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("delivers a published record unchanged, attempt 1", async () => {
      const bus = await fx.open(NO_RETRY);
      const record = busRecord(7, { path: "mqtt" });
      await bus.publish(record);
      const c = collect(bus);
      await waitFor(() => c.deliveries.length === 1, "delivery");
      expect(c.deliveries[0].record).toEqual(record);
      expect(c.deliveries[0].attempt).toBe(1);
    });

    it("delivers records published before and after consume, and an acked record never again", async () => {
      const bus = await fx.open(FAST_RETRY);
      for (let i = 0; i < 5; i++) await bus.publish(busRecord(i));
      const c = collect(bus, (d) => void d.ack());
      await Promise.all([5, 6, 7, 8, 9].map((i) => bus.publish(busRecord(i))));
      await waitFor(() => c.deliveries.length === 10, "10 deliveries");
      await waitFor(async () => (await bus.stats()).backlog === 0, "backlog drained");
      await sleep(30);
      expect(ids(c.deliveries)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `msg-${i}`).sort());
    });

    it("never calls the handler synchronously from consume or publish", async () => {
      const bus = await fx.open(NO_RETRY);
      await bus.publish(busRecord(1));
      let inside = true;
      const seenInside: boolean[] = [];
      bus.consume((d) => {
        seenInside.push(inside);
        void d.ack();
      });
      inside = false;
      await waitFor(() => seenInside.length === 1, "first delivery");
      inside = true;
      const published = bus.publish(busRecord(2));
      inside = false;
      await published;
      await waitFor(() => seenInside.length === 2, "second delivery");
      expect(seenInside).toEqual([false, false]);
    });

    it("ack forgets the record, idempotently", async () => {
      const bus = await fx.open(FAST_RETRY);
      await bus.publish(busRecord(1));
      const c = collect(bus);
      await waitFor(() => c.deliveries.length === 1, "delivery");
      const d = c.deliveries[0];
      await Promise.all([d.ack(), d.ack()]);
      await d.ack();
      expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0, deadLetters: 0 });
      await sleep(30);
      expect(c.deliveries).toHaveLength(1);
    });

    it("nack redelivers the same record with the attempt incremented", async () => {
      const bus = await fx.open(FAST_RETRY);
      const record = busRecord(3);
      await bus.publish(record);
      const c = collect(bus, (d) => {
        if (d.attempt === 1) void d.nack("transient");
        else void d.ack();
      });
      await waitFor(() => c.deliveries.length === 2, "redelivery");
      expect(c.deliveries.map((d) => d.attempt)).toEqual([1, 2]);
      expect(c.deliveries[1].record).toEqual(record);
      await waitFor(async () => (await bus.stats()).backlog === 0, "acked");
      expect(await bus.deadLetters(10)).toEqual([]);
    });

    it("dead-letters a record after maxAttempts failed deliveries and never redelivers it", async () => {
      const bus = await fx.open(FAST_RETRY);
      const record = busRecord(4);
      await bus.publish(record);
      const c = collect(bus, (d) => void d.nack(`failed attempt ${d.attempt}`));
      await waitFor(async () => (await bus.stats()).deadLetters === 1, "dead letter");
      await sleep(40);
      expect(c.deliveries.map((d) => d.attempt)).toEqual([1, 2, 3]);
      expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0, deadLetters: 1, oldestUnackedAgeMs: 0 });
      const dead = await bus.deadLetters(10);
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ record, attempts: 3, reason: "failed attempt 3" });
      expect(typeof dead[0].deadAt).toBe("number");
    });

    it("dead-letters what a refusing store fails, lists it without payload, replays it once the store recovers: stored once", async () => {
      const bus = await fx.open({ maxAttempts: 2, retryBaseMs: 5 });
      const store = createMemoryMailbox({ dedupTtlMs: 60_000 });
      let refusing = true;
      const mailbox: Mailbox = Object.assign(Object.create(store) as Mailbox, {
        store: (entry: Parameters<Mailbox["store"]>[0]) =>
          refusing ? Promise.reject(new RoutingError("BACKEND_UNAVAILABLE", "mailbox store failed")) : store.store(entry),
      });
      const route = createRouter({
        mailbox,
        presence: createMemoryPresenceStore({ ttlMs: 60_000 }),
        signals: createLocalSignalBridge({ deliver: () => 0 }),
        pushQueue: createMemoryPushQueue(),
      });
      const routed: string[] = [];
      bus.consume((d) => {
        route(d.record).then(
          () => d.ack().then(() => routed.push(d.record.messageId)),
          (err: unknown) => d.nack(err instanceof Error ? err.message : "routing failed"),
        );
      });
      const stored = busRecord(7, { isEphemeral: false });
      await bus.publish(stored);
      await waitFor(async () => (await bus.stats()).deadLetters === 1, "dead letter", 15_000);
      const [dead] = await bus.deadLetters(10);
      const view = deadLetterView(dead);
      expect(view).toMatchObject({ recipientId: RECIPIENT, messageId: "msg-7", attempts: 2, reason: "mailbox store failed", path: "http", priority: 7 });
      expect(JSON.stringify(view)).not.toContain("c1ph3r");
      expect(await store.fetch(RECIPIENT, 10)).toEqual([]);

      refusing = false;
      expect(await bus.replayDeadLetters([dead.id, "no-such-id"])).toBe(1);
      await waitFor(() => routed.includes("msg-7"), "the replayed record routed", 15_000);
      await waitFor(async () => (await bus.stats()).deadLetters === 0, "dead letter gone", 15_000);
      expect(await bus.replayDeadLetters([dead.id])).toBe(0);
      const fetched = await store.fetch(RECIPIENT, 10);
      expect(fetched.map((e) => [e.messageId, e.envelope])).toEqual([["msg-7", stored.envelope]]);
      // The same message id again (a second replay, a client resend): de-duplicated, fetched once.
      await bus.publish(stored);
      await waitFor(() => routed.filter((id) => id === "msg-7").length === 2, "the resend routed", 15_000);
      expect(await store.fetch(RECIPIENT, 10)).toHaveLength(1);
      await store.close();
    });

    it("drops dead letters by id, ignoring unknown ids", async () => {
      const bus = await fx.open({ maxAttempts: 1, retryBaseMs: 5 });
      for (let i = 0; i < 3; i++) await bus.publish(busRecord(i));
      collect(bus, (d) => void d.nack("bad"));
      await waitFor(async () => (await bus.stats()).deadLetters === 3, "3 dead letters", 15_000);
      const all = await bus.deadLetters(10);
      const drop = all.filter((d) => d.record.messageId !== "msg-1").map((d) => d.id);
      expect(await bus.dropDeadLetters([...drop, "unknown"])).toBe(2);
      expect(await bus.dropDeadLetters(drop)).toBe(0);
      expect((await bus.deadLetters(10)).map((d) => d.record.messageId)).toEqual(["msg-1"]);
      expect(await bus.stats()).toMatchObject({ deadLetters: 1 });
    });

    it("deadLetters lists at most `limit`", async () => {
      const bus = await fx.open({ maxAttempts: 1, retryBaseMs: 5 });
      for (let i = 0; i < 3; i++) await bus.publish(busRecord(i));
      collect(bus, (d) => void d.nack("bad"));
      await waitFor(async () => (await bus.stats()).deadLetters === 3, "3 dead letters");
      const two = await bus.deadLetters(2);
      expect(two).toHaveLength(2);
      const all = await bus.deadLetters(10);
      expect(all.map((d) => d.record.messageId).sort()).toEqual(["msg-0", "msg-1", "msg-2"]);
      for (const d of two) expect(all).toContainEqual(d);
    });

    it("pause stops new deliveries, resume restarts them, in-flight ones stay valid", async () => {
      const bus = await fx.open(NO_RETRY);
      for (let i = 0; i < 5; i++) await bus.publish(busRecord(i));
      // Pausing from inside the handler must stop the rest of the batch.
      const c = collect(bus, (_d, sub) => sub.pause());
      await waitFor(() => c.deliveries.length === 1, "first delivery");
      await sleep(30);
      expect(c.deliveries).toHaveLength(1);
      await c.deliveries[0].ack();
      if (busScope) expect(await bus.stats()).toMatchObject({ backlog: 4, inFlight: 0 });
      else {
        // The consumer holds (undelivered, paused) at most the 4 records still unacked.
        const held = await bus.stats();
        expect(held.inFlight).toBe(0);
        expect(held.backlog).toBeLessThanOrEqual(4);
      }

      for (let i = 5; i < 8; i++) await bus.publish(busRecord(i));
      await sleep(30);
      expect(c.deliveries).toHaveLength(1);
      c.sub.resume();
      await waitFor(() => c.deliveries.length >= 2, "delivery after resume");
      // The handler pauses again on every delivery: resume one at a time until all are in.
      for (let i = 0; i < 100 && c.deliveries.length < 8; i++) {
        c.sub.resume();
        await sleep(2);
      }
      expect(ids(c.deliveries)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => `msg-${i}`).sort());
    });

    it("closing a subscription returns unacked deliveries to the bus for the next consumer", async () => {
      const bus = await fx.open(NO_RETRY);
      await bus.publish(busRecord(1));
      await bus.publish(busRecord(2));
      const first = collect(bus);
      await waitFor(() => first.deliveries.length === 2, "2 deliveries");
      const acked = first.deliveries.find((d) => d.record.messageId === "msg-1");
      await acked?.ack();
      expect(await bus.stats()).toMatchObject({ backlog: 1, inFlight: 1 });
      await first.sub.close();
      // Returned to the bus: still in its backlog, no longer held by any consumer.
      expect(await bus.stats()).toMatchObject({ backlog: busScope ? 1 : 0, inFlight: 0 });
      await sleep(20);
      expect(first.deliveries).toHaveLength(2);

      const second = collect(bus);
      await waitFor(() => second.deliveries.length === 1, "redelivery to the next consumer");
      expect(second.deliveries[0].record).toEqual(busRecord(2));
      await second.deliveries[0].ack();
      expect(await bus.stats()).toMatchObject({ backlog: 0, inFlight: 0 });
    });

    it("allows one consumer at a time", async () => {
      const bus = await fx.open(NO_RETRY);
      const first = bus.consume(() => undefined);
      expect(() => bus.consume(() => undefined)).toThrow();
      await first.close();
      const second = bus.consume(() => undefined);
      await second.close();
    });

    it("reports backlog, in-flight and the oldest unacked age", async () => {
      const bus = await fx.open(NO_RETRY);
      expect(await bus.stats()).toEqual({ backlog: 0, inFlight: 0, deadLetters: 0, oldestUnackedAgeMs: 0 });
      for (let i = 0; i < 3; i++) await bus.publish(busRecord(i));
      expect(await bus.stats()).toMatchObject({ backlog: busScope ? 3 : 0, inFlight: 0 });
      await sleep(25);
      if (busScope) expect((await bus.stats()).oldestUnackedAgeMs).toBeGreaterThanOrEqual(10);
      const c = collect(bus);
      await waitFor(() => c.deliveries.length === 3, "3 deliveries");
      expect(await bus.stats()).toMatchObject({ backlog: 3, inFlight: 3 });
      // The age counts from publish, not from delivery.
      if (!busScope) expect((await bus.stats()).oldestUnackedAgeMs).toBeGreaterThanOrEqual(10);
      await c.deliveries[0].ack();
      expect(await bus.stats()).toMatchObject({ backlog: 2, inFlight: 2 });
      await Promise.all(c.deliveries.map((d) => d.ack()));
      expect(await bus.stats()).toEqual({ backlog: 0, inFlight: 0, deadLetters: 0, oldestUnackedAgeMs: 0 });
    });

    it("is ready while open; publish after close rejects with BACKEND_UNAVAILABLE", async () => {
      const bus = await fx.open(NO_RETRY);
      expect(await bus.ready()).toBe(true);
      await bus.close();
      await bus.close();
      expect(await bus.ready()).toBe(false);
      const err = await bus.publish(busRecord(1)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RoutingError);
      expect((err as RoutingError).code).toBe("BACKEND_UNAVAILABLE");
    });

    it.runIf(caps.durable)("redelivers every unacked record after the bus is closed and opened again", async () => {
      const before = await fx.open(NO_RETRY);
      for (let i = 0; i < 4; i++) await before.publish(busRecord(i));
      const c = collect(before, (_d, sub) => {
        if (c.deliveries.length === 2) sub.pause();
      });
      await waitFor(() => c.deliveries.length === 2, "2 deliveries");
      const acked = c.deliveries[0];
      await acked.ack();
      // One delivery in flight, two never delivered: all three come back.
      await before.close();

      const after = await fx.open(NO_RETRY);
      expect(await after.stats()).toMatchObject({ backlog: busScope ? 3 : 0, inFlight: 0 });
      const again = collect(after);
      await waitFor(() => again.deliveries.length === 3, "3 redeliveries");
      expect(await after.stats()).toMatchObject({ backlog: 3, inFlight: 3 });
      await sleep(20);
      const expected = [0, 1, 2, 3].filter((i) => `msg-${i}` !== acked.record.messageId).map((i) => busRecord(i));
      expect(again.deliveries.map((d) => d.record).sort((a, b) => a.acceptedAt - b.acceptedAt)).toEqual(expected);
      expect(again.deliveries.every((d) => d.attempt === 1)).toBe(true);
    });

    it.runIf(caps.durable)("keeps failed attempts and dead letters across a re-open", async () => {
      const first = await fx.open(NO_RETRY);
      const record = busRecord(5);
      await first.publish(record);
      const c1 = collect(first);
      await waitFor(() => c1.deliveries.length === 1, "delivery");
      await c1.deliveries[0].nack("first failure");
      await first.close();

      const second = await fx.open({ maxAttempts: 2, retryBaseMs: 5 });
      const c2 = collect(second);
      await waitFor(() => c2.deliveries.length === 1, "redelivery after re-open");
      expect(c2.deliveries[0].attempt).toBe(2);
      await c2.deliveries[0].nack("second failure");
      await second.close();

      const third = await fx.open(FAST_RETRY);
      const c3 = collect(third);
      expect(await third.stats()).toMatchObject({ backlog: 0, deadLetters: 1 });
      expect(await third.deadLetters(10)).toMatchObject([{ record, attempts: 2, reason: "second failure" }]);
      await sleep(30);
      expect(c3.deliveries).toHaveLength(0);
    });
  });
}
