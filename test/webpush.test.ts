/**
 * Web Push for browsers, end to end: a service process with the dev VAPID pair (embedded default)
 * pushes to a local HTTPS push-service stand-in that verifies the VAPID JWT and decrypts the
 * aes128gcm payload with the subscription's keys, as a browser would.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webPushResult } from "../push/webpush-sender.ts";
import { http } from "./helpers/clients.ts";
import { makeTlsFixture, type TlsFixture } from "./helpers/push-fakes.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { startWebPushFake, type BrowserSubscription } from "./helpers/webpush-fake.ts";
import { waitFor as pollUntil } from "./contracts/fixture.ts";

const waitFor = (condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> => pollUntil(condition, what, timeoutMs);

const SECRET = Buffer.from("the plaintext only the two ends may read").toString("base64");

describe("Web Push (VAPID, aes128gcm) against a local push-service stand-in", () => {
  let tls: TlsFixture;
  let fake: Awaited<ReturnType<typeof startWebPushFake>>;
  let svc: RunningService;
  beforeAll(async () => {
    tls = makeTlsFixture();
    fake = await startWebPushFake(tls);
    svc = await startService({ NODE_EXTRA_CA_CERTS: tls.caFile, ROUTING_PUSH_COLLAPSE_SECONDS: "0" });
  });
  afterAll(async () => {
    expect(await svc?.stop()).toBe(0);
    removeDir(svc.dataDir);
    await fake?.close();
    removeDir(tls.dir);
  });

  const register = async (bobToken: string, sub: BrowserSubscription) =>
    (
      await http(svc.url, "POST", "/register-device", {
        token: bobToken,
        body: { platform: "webpush", subscription: { endpoint: sub.endpoint, keys: sub.keys, expirationTime: null } },
      })
    ).status;

  it("makes a dev VAPID pair in the data dir (0600) and says so once at start", () => {
    const path = join(svc.dataDir, "dev-vapid-keys.json");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const keys = JSON.parse(readFileSync(path, "utf8")) as { publicKey: string; privateKey: string };
    expect(Buffer.from(keys.publicKey, "base64url")).toHaveLength(65);
    expect(svc.output()).toContain(`push: Web Push uses the dev VAPID key pair in ${path} (public key ${keys.publicKey})`);
    expect(svc.output()).not.toContain(keys.privateKey);
  });

  it("pushes an encrypted content-free poke the browser can decrypt; 410 removes the subscription", async () => {
    const vapid = JSON.parse(readFileSync(join(svc.dataDir, "dev-vapid-keys.json"), "utf8")) as { publicKey: string };
    const bob = `urn:sm:user:bob-webpush-${Date.now()}`;
    const [alice, bobToken] = [await token("urn:sm:user:alice-webpush"), await token(bob)];
    const first = fake.subscribe("first");
    expect(await register(bobToken, first)).toBe(204);

    const sent = await http(svc.url, "POST", "/send", { token: alice, body: { recipientId: bob, encryptedData: SECRET } });
    expect(sent.status).toBe(202);
    await waitFor(() => fake.to(first).length === 1, "the first push");
    const push = fake.to(first)[0];
    expect(push.problem).toBeUndefined();
    expect(JSON.parse(push.plaintext!)).toEqual({ type: "poke", unread: 1 });
    expect(push.vapidKey).toBe(vapid.publicKey);
    expect(push.claims).toMatchObject({ aud: fake.origin, sub: "mailto:routing@localhost.invalid" });
    expect(push.headers).toMatchObject({ "content-encoding": "aes128gcm", ttl: "86400", urgency: "normal" });
    expect(push.headers.topic).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Zero knowledge: neither the envelope's payload nor its id nor the recipient travel to the push service.
    const wire = push.raw.toString("latin1") + JSON.stringify(push.headers) + push.plaintext;
    for (const hidden of [SECRET, sent.body.messageId as string, bob]) expect(wire).not.toContain(hidden);

    // The push service now says the subscription is gone: it is removed and never pushed again.
    fake.answer(first, 410);
    const ack = await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: [sent.body.messageId] } });
    expect(ack.status).toBe(204);
    expect((await http(svc.url, "POST", "/send", { token: alice, body: { recipientId: bob, encryptedData: SECRET, priority: 7 } })).status).toBe(202);
    await waitFor(() => fake.to(first).length === 2, "the push answered 410");
    expect(fake.to(first)[1].headers.urgency).toBe("high");

    // A later subscription gets the next push; the removed one gets nothing (checked after the later arrived).
    const second = fake.subscribe("second");
    expect(await register(bobToken, second)).toBe(204);
    expect((await http(svc.url, "POST", "/send", { token: alice, body: { recipientId: bob, encryptedData: SECRET } })).status).toBe(202);
    await waitFor(() => fake.to(second).length === 1, "the push to the second subscription");
    expect(JSON.parse(fake.to(second)[0].plaintext!)).toMatchObject({ type: "poke" });
    expect(fake.to(first)).toHaveLength(2);
    const metrics = (await http(svc.url, "GET", "/metrics")).text;
    expect(metrics).toMatch(/routing_push_total\{platform="webpush",result="invalidToken"\} 1/);
    expect(metrics).toMatch(/routing_push_total\{platform="webpush",result="sent"\} 2/);
  });

  it("DELETE /register-device with the endpoint removes a subscription; re-registering new keys replaces the old ones", async () => {
    const bob = `urn:sm:user:bob-webpush-del-${Date.now()}`;
    const [alice, bobToken] = [await token("urn:sm:user:alice-webpush"), await token(bob)];
    const kept = fake.subscribe("kept");
    const dropped = fake.subscribe("dropped");
    expect(await register(bobToken, kept)).toBe(204);
    expect(await register(bobToken, dropped)).toBe(204);
    expect((await http(svc.url, "DELETE", "/register-device", { token: bobToken, body: { token: dropped.endpoint } })).status).toBe(204);
    // The same endpoint with new keys (the browser re-subscribed): only the new keys are used.
    const renewed = fake.renew(kept);
    expect(await register(bobToken, renewed)).toBe(204);
    for (let n = 1; n <= 2; n++) {
      expect((await http(svc.url, "POST", "/send", { token: alice, body: { recipientId: bob, encryptedData: SECRET } })).status).toBe(202);
      await waitFor(() => fake.to(kept).length >= n, `push ${n} to the kept endpoint`);
    }
    // Every push there decrypted with the renewed keys (one to stale keys would have failed), none went to the deleted one.
    expect(fake.to(kept).map((p) => p.problem)).toEqual([undefined, undefined]);
    expect(fake.to(dropped)).toHaveLength(0);
  });

  it("refuses malformed subscriptions with 400 INVALID_REQUEST", async () => {
    const bobToken = await token("urn:sm:user:bob-webpush-bad");
    const good = fake.subscribe("shape");
    const bad = [
      { platform: "webpush", subscription: { endpoint: "http://insecure.example/x", keys: good.keys } },
      { platform: "webpush", subscription: { endpoint: good.endpoint, keys: { p256dh: good.keys.p256dh } } },
      { platform: "webpush", subscription: { endpoint: good.endpoint, keys: { p256dh: good.keys.auth + good.keys.auth, auth: good.keys.auth } } },
      { platform: "webpush", token: "x" },
    ];
    for (const body of bad) {
      const res = await http(svc.url, "POST", "/register-device", { token: bobToken, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error?.code).toBe("INVALID_REQUEST");
    }
  });

  it("maps push-service answers: 404/410 invalid, 429/5xx retry (Retry-After), other 4xx failed", () => {
    expect(webPushResult(410).kind).toBe("invalidToken");
    expect(webPushResult(404).kind).toBe("invalidToken");
    expect(webPushResult(429, { "retry-after": "7" })).toEqual({ kind: "retry", reason: "http 429", retryAfterMs: 7000 });
    expect(webPushResult(503)).toEqual({ kind: "retry", reason: "http 503" });
    expect(webPushResult(403).kind).toBe("failed");
    expect(webPushResult(413).kind).toBe("failed");
  });
});
