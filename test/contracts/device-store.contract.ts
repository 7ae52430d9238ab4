import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DeviceStore, DeviceToken } from "../../backends/device-store.ts";
import type { Urn } from "../../core/urn.ts";
import { manualClock, type Fixture, type FixtureFactory, type ManualClock } from "./fixture.ts";

export interface DeviceStoreContractOptions {
  /** The clock `registeredAt` is taken from. */
  readonly now: () => number;
}

const ALICE = "urn:sm:user:alice" as Urn;
const BOB = "urn:sm:user:bob" as Urn;

function byToken(tokens: DeviceToken[]): DeviceToken[] {
  return [...tokens].sort((a, b) => (a.token < b.token ? -1 : 1));
}

/** Every guarantee of `DeviceStore` (backends/device-store.ts), for one implementation. */
export function describeDeviceStoreContract(name: string, factory: FixtureFactory<DeviceStore, DeviceStoreContractOptions>): void {
  describe(`DeviceStore contract: ${name}`, () => {
    let fx: Fixture<DeviceStore, DeviceStoreContractOptions>;
    let clock: ManualClock;
    let store: DeviceStore;
    beforeEach(async () => {
      fx = await factory();
      clock = manualClock();
      store = await fx.open({ now: clock.now });
    });
    afterEach(async () => {
      await fx.teardown();
    });

    it("purge removes every token of the owner only, idempotently", async () => {
      await store.register(ALICE, "tok-1", "fcm");
      await store.register(ALICE, "tok/2", "apns");
      await store.register(BOB, "tok-3", "fcm");
      expect(await store.purge(ALICE)).toBe(2);
      expect(await store.list(ALICE)).toEqual([]);
      expect(await store.purge(ALICE)).toBe(0);
      expect((await store.list(BOB)).map((t) => t.token)).toEqual(["tok-3"]);
      // The tokens are free again: registering one for Bob is a plain registration.
      await store.register(BOB, "tok-1", "fcm");
      expect((await store.list(BOB)).map((t) => t.token).sort()).toEqual(["tok-1", "tok-3"]);
    });

    it("registering a token twice for one owner stores it once, refreshed", async () => {
      const t0 = clock.now();
      await store.register(ALICE, "tok-1", "fcm");
      expect(await store.list(ALICE)).toEqual([{ token: "tok-1", platform: "fcm", registeredAt: t0 }]);
      clock.advance(500);
      await store.register(ALICE, "tok-1", "apns");
      expect(await store.list(ALICE)).toEqual([{ token: "tok-1", platform: "apns", registeredAt: t0 + 500 }]);
    });

    it("keeps several tokens per owner, apart from other owners'", async () => {
      await store.register(ALICE, "tok-b", "apns");
      await store.register(ALICE, "tok-a", "fcm");
      await store.register(BOB, "tok-c", "fcm");
      const t = clock.now();
      expect(byToken(await store.list(ALICE))).toEqual([
        { token: "tok-a", platform: "fcm", registeredAt: t },
        { token: "tok-b", platform: "apns", registeredAt: t },
      ]);
      expect(await store.list(BOB)).toEqual([{ token: "tok-c", platform: "fcm", registeredAt: t }]);
      expect(await store.list("urn:sm:user:nobody" as Urn)).toEqual([]);
    });

    it("holds a Web Push subscription token (long JSON with slashes and colons) like any other", async () => {
      const sub = JSON.stringify({
        endpoint: "https://push.example/wpush/v2/gAAAAABk-abc/def:ghi%2F..",
        keys: { p256dh: "B".repeat(87), auth: "A".repeat(22) },
      });
      await store.register(ALICE, sub, "webpush");
      await store.register(ALICE, "tok-1", "fcm");
      expect(byToken(await store.list(ALICE)).map((t) => [t.token, t.platform])).toEqual([
        ["tok-1", "fcm"],
        [sub, "webpush"],
      ]);
      await store.removeToken(sub);
      expect((await store.list(ALICE)).map((t) => t.token)).toEqual(["tok-1"]);
    });

    it("registering a token for another owner moves it there", async () => {
      await store.register(ALICE, "tok-1", "fcm");
      await store.register(BOB, "tok-1", "fcm");
      expect(await store.list(ALICE)).toEqual([]);
      expect((await store.list(BOB)).map((t) => t.token)).toEqual(["tok-1"]);
    });

    it("unregister removes only the owner's token, idempotently", async () => {
      await store.register(ALICE, "tok-1", "fcm");
      await store.unregister(BOB, "tok-1");
      expect((await store.list(ALICE)).map((t) => t.token)).toEqual(["tok-1"]);
      await store.unregister(ALICE, "tok-1");
      await store.unregister(ALICE, "tok-1");
      await store.unregister(ALICE, "never-registered");
      expect(await store.list(ALICE)).toEqual([]);
    });

    it("removeToken removes the token whoever holds it, idempotently", async () => {
      await store.register(ALICE, "tok-1", "fcm");
      await store.register(ALICE, "tok-2", "fcm");
      await store.removeToken("tok-1");
      await store.removeToken("tok-1");
      await store.removeToken("never-registered");
      expect((await store.list(ALICE)).map((t) => t.token)).toEqual(["tok-2"]);
    });

    it("is ready while open", async () => {
      expect(await store.ready()).toBe(true);
      await store.close();
      expect(await store.ready()).toBe(false);
    });
  });
}
