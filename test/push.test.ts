import { rmSync } from "node:fs";
import { ServiceBroker } from "moleculer";
import { decodeProtectedHeader } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DeviceStore } from "../backends/device-store.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import { createMemoryDeviceStore } from "../backends/memory-device-store.ts";
import { createMemoryMailbox } from "../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../backends/memory-push-queue.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { PushQueue } from "../backends/push-queue.ts";
import type { Urn } from "../core/urn.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createApnsSender } from "../push/apns-sender.ts";
import { createDispatcher } from "../push/dispatcher.ts";
import { createFcmSender } from "../push/fcm-sender.ts";
import { signalOnEnqueue } from "../push/index.ts";
import { collapseKeyFor, type PushSender } from "../push/sender.ts";
import { createRouter } from "../routing/router.ts";
import { createPushService } from "../services/push.service.ts";
import { manualClock, sleep, waitFor, type ManualClock } from "./contracts/fixture.ts";
import { connect, http } from "./helpers/clients.ts";
import {
  everything,
  makeCredentials,
  makeTlsFixture,
  startFakeApns,
  startFakeFcm,
  type FakeApns,
  type FakeFcm,
  type PushCredentials,
  type TlsFixture,
} from "./helpers/push-fakes.ts";
import { removeDir, startService, token } from "./helpers/service.ts";

/** The payload every test sends: it must appear in no request to a provider. */
const SECRET = Buffer.from("zero-knowledge: never in a push 7f3a9c").toString("base64");

let tls: TlsFixture;
let creds: PushCredentials;
let fcm: FakeFcm;
let apns: FakeApns;

beforeAll(async () => {
  tls = makeTlsFixture();
  creds = makeCredentials(tls.dir);
  fcm = await startFakeFcm(tls, creds);
  apns = await startFakeApns(tls, creds);
});
afterAll(async () => {
  await fcm?.close();
  await apns?.close();
  if (tls) rmSync(tls.dir, { recursive: true, force: true });
});
afterEach(() => {
  fcm.reset();
  apns.reset();
});

function senders(): PushSender[] {
  return [
    createFcmSender({ serviceAccountFile: creds.serviceAccountFile, endpoint: fcm.url, ca: tls.ca }),
    createApnsSender({
      keyFile: creds.apnsKeyFile,
      keyId: creds.apnsKeyId,
      teamId: creds.apnsTeamId,
      topic: creds.apnsTopic,
      production: false,
      host: "127.0.0.1",
      port: apns.port,
      ca: tls.ca,
    }),
  ];
}

let users = 0;
const user = (name: string) => `urn:sm:user:${name}-${++users}` as Urn;

interface Harness {
  readonly broker: ServiceBroker;
  readonly queue: PushQueue;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly presence: PresenceStore;
  /** Routes a stored message to `to` the way the router does (nobody online: a push is due). */
  send(to: Urn, priority?: number): Promise<string>;
  stats(): Promise<{ queued: number; deadLetters: number; platforms: Record<string, Record<string, number>>; outcomes: Record<string, number> }>;
  stop(): Promise<void>;
}

/** The push service on a broker of its own over memory backends, with the real senders aimed at the fakes. */
async function startPush(opts: { collapseMs?: number; maxAttempts?: number; clock?: ManualClock } = {}): Promise<Harness> {
  const queue = createMemoryPushQueue();
  const mailbox = createMemoryMailbox({ dedupTtlMs: 60_000 });
  const devices = createMemoryDeviceStore();
  const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
  const broker = new ServiceBroker({ logger: false });
  broker.createService(
    createPushService({
      queue,
      presence,
      mailbox,
      devices,
      senders: senders(),
      metrics: createMetrics(),
      collapseMs: opts.collapseMs ?? 60_000,
      maxAttempts: opts.maxAttempts ?? 5,
      retryBaseMs: 20,
      concurrency: 4,
      drainTimeoutMs: 2000,
      pollMs: 50,
      now: opts.clock?.now,
    }),
  );
  await broker.start();
  const route = createRouter({
    mailbox,
    presence,
    signals: { signal: async () => 0, close: async () => {} },
    pushQueue: signalOnEnqueue(queue, () => broker.broadcastLocal("push.queue.changed")),
  });
  let n = 0;
  return {
    broker,
    queue,
    mailbox,
    devices,
    presence,
    async send(to, priority = 1) {
      const messageId = `m-${++n}`;
      const envelope = JSON.stringify({ recipientId: to, messageId, priority, encryptedData: SECRET, encryptedSymmetricKey: SECRET });
      expect(await route({ recipientId: to, messageId, isEphemeral: false, priority, envelope, acceptedAt: Date.now(), path: "http" })).toBe("push_due");
      return messageId;
    },
    stats: () => broker.call("push.stats"),
    async stop() {
      await broker.stop();
      await Promise.all([queue.close(), mailbox.close(), devices.close(), presence.close()]);
    },
  };
}

/** Waits for `n` requests, then a few more poll rounds to see that no more come. */
async function exactly(requests: () => unknown[], n: number, what: string): Promise<void> {
  await waitFor(() => requests().length >= n, what);
  await sleep(250);
  expect(requests(), what).toHaveLength(n);
}

describe("push senders and rules against local FCM and APNs stand-ins", () => {
  let h: Harness;
  afterEach(async () => {
    await h?.stop();
  });

  it("sends one data-only push per registered token, exactly as the providers expect, with no envelope content", async () => {
    h = await startPush();
    const bob = user("bob");
    await h.devices.register(bob, "fcm-token-1", "fcm");
    await h.devices.register(bob, "a0a1a2a3", "apns");
    await h.send(bob);
    await exactly(() => fcm.sends(), 1, "one FCM push");
    await exactly(() => apns.requests, 1, "one APNs push");
    const key = collapseKeyFor(bob);

    // FCM: an OAuth token exchange signed by the service account, then HTTP v1 messages:send.
    const exchange = fcm.requests.find((r) => r.path === "/token");
    expect(exchange?.host).toBe("oauth2.googleapis.com");
    const [send] = fcm.sends();
    expect(send.host).toBe("fcm.googleapis.com");
    expect(send.path).toBe(`/v1/projects/${creds.projectId}/messages:send`);
    expect(send.headers.authorization).toMatch(/^Bearer fake-access-/);
    const message = (JSON.parse(send.body) as { message: Record<string, unknown> }).message;
    expect(message).toEqual({
      token: "fcm-token-1",
      data: { type: "poke", unread: "1" },
      android: { priority: "normal", collapse_key: key, ttl: "86400s" },
      apns: {
        headers: { "apns-priority": "5", "apns-push-type": "background", "apns-collapse-id": key, "apns-expiration": expect.stringMatching(/^\d+$/) },
        payload: { aps: { "content-available": 1 } },
      },
      webpush: { headers: { Urgency: "normal", TTL: "86400", Topic: key } },
    });
    expect(message).not.toHaveProperty("notification");

    // APNs: HTTP/2 POST /3/device/<token>, provider JWT (ES256, kid, team id; verified by the fake).
    const [push] = apns.requests;
    expect(push.status).toBe(200);
    expect(push.method).toBe("POST");
    expect(push.path).toBe("/3/device/a0a1a2a3");
    expect(push.headers).toMatchObject({ "apns-topic": creds.apnsTopic, "apns-priority": "5", "apns-push-type": "background", "apns-collapse-id": key });
    expect(Number(push.headers["apns-expiration"])).toBeGreaterThan(Date.now() / 1000);
    const jwt = push.headers.authorization.replace(/^bearer /, "");
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: "ES256", kid: creds.apnsKeyId });
    expect(JSON.parse(push.body)).toEqual({ aps: { "content-available": 1 }, type: "poke", unread: 1 });

    const all = everything([...fcm.requests, ...apns.requests]);
    for (const leak of [SECRET, "encryptedData", bob, "m-1"]) expect(all).not.toContain(leak);
    expect((await h.stats()).platforms).toMatchObject({ fcm: { sent: 1 }, apns: { sent: 1 } });
  });

  it("pushes priority >= 5 as high: FCM android high, APNs a content-free alert at apns-priority 10", async () => {
    h = await startPush();
    const bob = user("bob");
    await h.devices.register(bob, "fcm-high", "fcm");
    await h.devices.register(bob, "b0b1", "apns");
    await h.send(bob, 5);
    await exactly(() => [...fcm.sends(), ...apns.requests], 2, "two pushes");
    const message = (JSON.parse(fcm.sends()[0].body) as { message: { android: object; apns: { headers: object; payload: object } } }).message;
    expect(message.android).toMatchObject({ priority: "high" });
    expect(message.apns.headers).toMatchObject({ "apns-priority": "10", "apns-push-type": "alert" });
    expect(message.apns.payload).toEqual({ aps: { alert: { "loc-key": "NEW_MESSAGE" }, "mutable-content": 1 } });
    expect(apns.requests[0].headers).toMatchObject({ "apns-priority": "10", "apns-push-type": "alert" });
    expect(JSON.parse(apns.requests[0].body)).toEqual({ aps: { alert: { "loc-key": "NEW_MESSAGE" }, "mutable-content": 1 }, type: "poke", unread: 1 });
  });

  it("retries a 5xx and delivers one push after it", async () => {
    h = await startPush();
    const [a, b, c] = [user("a"), user("b"), user("c")];
    await h.devices.register(a, "c0c1", "apns");
    apns.script("c0c1", [{ status: 503, reason: "ServiceUnavailable" }, { status: 200 }]);
    await h.devices.register(b, "fcm-500", "fcm");
    fcm.script("fcm-500", [500, 200]);
    await h.devices.register(c, "fcm-503", "fcm");
    fcm.script("fcm-503", [503, 200]); // firebase-admin retries a 503 itself
    await Promise.all([h.send(a), h.send(b), h.send(c)]);
    await exactly(() => apns.requests, 2, "APNs: 503, then the retry");
    await exactly(() => fcm.sends(), 4, "FCM: 500 and 503, then their retries");
    expect(apns.requests.map((r) => r.status)).toEqual([503, 200]);
    const byToken = (t: string) =>
      fcm
        .sends()
        .filter((r) => r.body.includes(t))
        .map((r) => r.status);
    expect(byToken("fcm-500")).toEqual([500, 200]);
    expect(byToken("fcm-503")).toEqual([503, 200]);
    const stats = await h.stats();
    expect(stats.platforms).toEqual({ fcm: { sent: 2, retry: 1, invalidToken: 0, failed: 0 }, apns: { sent: 1, retry: 1, invalidToken: 0, failed: 0 } });
    expect(stats.queued).toBe(0);
  });

  it("removes a token the provider calls invalid: FCM UNREGISTERED, APNs 410 Unregistered and 400 BadDeviceToken", async () => {
    h = await startPush();
    const bob = user("bob");
    fcm.script("fcm-gone", [404]);
    apns.script("d0d1", [{ status: 410, reason: "Unregistered" }]);
    apns.script("d2d3", [{ status: 400, reason: "BadDeviceToken" }]);
    for (const [t, p] of [
      ["fcm-gone", "fcm"],
      ["d0d1", "apns"],
      ["d2d3", "apns"],
      ["d4d5", "apns"],
    ] as const)
      await h.devices.register(bob, t, p);
    await h.send(bob);
    await waitFor(async () => (await h.devices.list(bob)).length === 1, "invalid tokens removed");
    expect((await h.devices.list(bob)).map((d) => d.token)).toEqual(["d4d5"]);
    await waitFor(async () => (await h.queue.count()) === 0, "push completed");
    expect((await h.stats()).platforms).toMatchObject({ fcm: { invalidToken: 1 }, apns: { invalidToken: 2, sent: 1 } });
  });

  it("collapses: one push per recipient in the window while it is unread; a new one after an ack or after the window", async () => {
    const clock = manualClock(Date.now());
    h = await startPush({ collapseMs: 60_000, clock });
    const bob = user("bob");
    await h.devices.register(bob, "e0e1", "apns");
    const pushes = () => apns.requests;
    const m1 = await h.send(bob);
    await exactly(pushes, 1, "first push");
    const m2 = await h.send(bob);
    await waitFor(async () => (await h.queue.count()) === 0, "second push settled");
    await exactly(pushes, 1, "collapsed into the first");

    await h.mailbox.ack(bob, [m1, m2]);
    await h.send(bob);
    await exactly(pushes, 2, "a push after the ack");
    await h.send(bob);
    await waitFor(async () => (await h.queue.count()) === 0, "fourth push settled");
    await exactly(pushes, 2, "collapsed again");

    clock.advance(60_000);
    await h.send(bob);
    await exactly(pushes, 3, "a push after the window");
    expect(JSON.parse(pushes()[2].body)).toMatchObject({ unread: 3 });
    expect((await h.stats()).outcomes).toMatchObject({ sent: 3, collapsed: 2 });
  });

  it("does not push while the recipient has an online session", async () => {
    h = await startPush();
    const bob = user("bob");
    await h.devices.register(bob, "fcm-online", "fcm");
    await h.presence.add(bob, { sessionId: "s1", instanceId: "i1", protocol: "ws", connectedAt: Date.now() });
    await h.send(bob);
    await waitFor(async () => (await h.queue.count()) === 0, "push settled");
    await exactly(() => fcm.requests, 0, "no push");
    expect((await h.stats()).outcomes).toMatchObject({ online: 1, sent: 0 });
  });

  it("dead-letters a push after ROUTING_PUSH_MAX_ATTEMPTS retryable failures", async () => {
    h = await startPush({ maxAttempts: 3 });
    const bob = user("bob");
    await h.devices.register(bob, "f0f1", "apns");
    apns.script(
      "f0f1",
      Array.from({ length: 5 }, () => ({ status: 503, reason: "ServiceUnavailable" })),
    );
    const messageId = await h.send(bob);
    await waitFor(async () => (await h.stats()).deadLetters === 1, "dead letter");
    expect(apns.requests).toHaveLength(3);
    const dead = await h.broker.call<Array<Record<string, unknown>>, { limit: number }>("push.deadLetters", { limit: 10 });
    expect(dead).toEqual([
      { recipientId: bob, messageId, priority: 1, dueAt: expect.any(String), reason: "apns: ServiceUnavailable", deadAt: expect.any(String) },
    ]);
    expect(await h.queue.count()).toBe(0);
    expect((await h.devices.list(bob)).map((d) => d.token)).toEqual(["f0f1"]);
  });
});

describe("push dispatcher bounds", () => {
  it("keeps at most `concurrency` provider requests in flight; a slow provider never slows routing", async () => {
    const queue = createMemoryPushQueue();
    const mailbox = createMemoryMailbox({ dedupTtlMs: 60_000 });
    const devices = createMemoryDeviceStore();
    const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
    let inFlight = 0;
    let peak = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: PushSender = {
      platform: "fcm",
      async send() {
        peak = Math.max(peak, ++inFlight);
        await gate;
        inFlight--;
        return { kind: "sent" };
      },
      close: async () => {},
    };
    const log = { warn: () => {}, debug: () => {} };
    const dispatcher = createDispatcher({
      queue,
      presence,
      mailbox,
      devices,
      senders: [slow],
      collapseMs: 0,
      maxAttempts: 3,
      retryBaseMs: 10,
      concurrency: 3,
      batchSize: 20,
      log,
    });
    const route = createRouter({ mailbox, presence, signals: { signal: async () => 0, close: async () => {} }, pushQueue: queue });
    for (let i = 0; i < 20; i++) {
      const to = `urn:sm:user:r${i}` as Urn;
      await devices.register(to, `tok-${i}`, "fcm");
      await route({ recipientId: to, messageId: `m${i}`, isEphemeral: false, priority: 1, envelope: "{}", acceptedAt: Date.now(), path: "http" });
    }
    const sending = dispatcher.send((await dispatcher.take()).pushes);
    await sleep(20);
    expect(inFlight).toBe(3);
    // Routing only enqueues: it completes while every provider request hangs.
    expect(
      await route({
        recipientId: "urn:sm:user:late" as Urn,
        messageId: "late",
        isEphemeral: false,
        priority: 1,
        envelope: "{}",
        acceptedAt: Date.now(),
        path: "http",
      }),
    ).toBe("push_due");
    release();
    expect(await sending).toEqual({ settled: 20, retried: 0 });
    expect(peak).toBe(3);
    expect(await queue.count()).toBe(1);
    await Promise.all([queue.close(), mailbox.close(), devices.close(), presence.close()]);
  });
});

describe("push end to end (service process)", () => {
  it("registers a device, pushes once to an offline recipient, then the recipient connects, pulls and acks", async () => {
    const svc = await startService({
      NODE_EXTRA_CA_CERTS: tls.caFile,
      ROUTING_FCM_SERVICE_ACCOUNT_FILE: creds.serviceAccountFile,
      ROUTING_FCM_ENDPOINT: fcm.url,
      ROUTING_APNS_KEY_FILE: creds.apnsKeyFile,
      ROUTING_APNS_KEY_ID: creds.apnsKeyId,
      ROUTING_APNS_TEAM_ID: creds.apnsTeamId,
      ROUTING_APNS_TOPIC: creds.apnsTopic,
      ROUTING_APNS_HOST: "127.0.0.1",
      ROUTING_APNS_PORT: String(apns.port),
    });
    try {
      expect(svc.output()).not.toContain("push: FCM is off");
      expect(svc.output()).not.toContain("push: APNs is off");
      const bob = "urn:sm:user:bob-e2e";
      const [alice, bobToken] = [await token("urn:sm:user:alice-e2e"), await token(bob)];
      expect((await http(svc.url, "POST", "/register-device", { token: bobToken, body: { token: "e2e-fcm-token", platform: "fcm" } })).status).toBe(204);
      const sent = await http(svc.url, "POST", "/send", { token: alice, body: { recipientId: bob, encryptedData: SECRET } });
      expect(sent.status).toBe(202);
      await exactly(() => fcm.sends(), 1, "one push at the FCM stand-in");
      expect(fcm.sends()[0].body).toContain('"token":"e2e-fcm-token"');
      await sleep(1200); // past the service's queue poll: still exactly one
      expect(fcm.sends()).toHaveLength(1);
      expect(apns.requests).toHaveLength(0);
      expect(everything(fcm.requests)).not.toContain(SECRET);

      const socket = await connect(svc.port, { token: bobToken });
      const pulled = await http(svc.url, "GET", "/messages", { token: bobToken });
      expect(pulled.body.messages?.map((m) => [m.id, m.envelope.encryptedData])).toEqual([[sent.body.messageId, SECRET]]);
      expect((await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: [sent.body.messageId] } })).status).toBe(204);
      expect((await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages).toEqual([]);
      await socket.close();
      expect((await http(svc.url, "GET", "/metrics")).text).toMatch(/routing_push_total\{platform="fcm",result="sent"\} 1/);
    } finally {
      expect(await svc.stop()).toBe(0);
      removeDir(svc.dataDir);
    }
  });
});
