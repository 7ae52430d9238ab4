/**
 * MQTT (issue 4) with real mqtt.js clients: the embedded broker over TCP and over WebSocket (both
 * gateway engines) in service processes; PUBACK timing against a bus under the test's control
 * (in-process); the external-broker mode against the local Mosquitto (127.0.0.1:1883).
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createTokenVerifier } from "../auth/jose-verifier.ts";
import type { IngressBus } from "../backends/ingress-bus.ts";
import { createMemoryMailbox } from "../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { openSqliteDb } from "../backends/sqlite-db.ts";
import { createSqliteMailbox } from "../backends/sqlite-mailbox.ts";
import { createMqtt, type MqttRuntime } from "../broker/index.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import { createSessionHost } from "../gateway/sessions.ts";
import { createMetrics } from "../metrics/registry.ts";
import { createIngress } from "../routing/ingress.ts";
import { connect, envelope, http, type QueuedMessageBody, type TestSocket } from "./helpers/clients.ts";
import { connackRefusal, mqttConnect, type MqttTestClient } from "./helpers/mqtt.ts";
import { removeDir, startService, TEST_SECRET, token, type RunningService } from "./helpers/service.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * Budget for one expected frame. Generous: on a busy machine a service's synchronous SQLite fsync
 * can stall its event loop for seconds; a real failure still fails.
 */
const WAIT_MS = 15_000;

let users = 0;
function user(name: string): string {
  return `urn:sm:user:${name}-${++users}-${randomBytes(3).toString("hex")}`;
}

const receiveTopic = (urn: string): string => `clients/${urn}/receive`;
const ackTopic = (urn: string): string => `clients/${urn}/ack`;

async function messagesOf(svc: RunningService, urn: string): Promise<QueuedMessageBody[]> {
  return (await http(svc.url, "GET", "/messages", { token: await token(urn) })).body.messages ?? [];
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Log lines reach this process through a pipe, possibly after the effect a test saw. */
function untilLogged(svc: RunningService, line: RegExp): Promise<true> {
  return waitFor(async () => (line.test(svc.output()) ? true : undefined), `a log line matching ${line}`);
}

/**
 * Waits until a WebSocket session is online (its presence written): the 101 comes before that, and
 * a session that is not online yet answers `fetch` with an error instead of `messages`.
 */
async function untilOnline(socket: TestSocket): Promise<TestSocket> {
  for (let i = 0; ; i++) {
    const ref = `online-${i}`;
    socket.send({ type: "fetch", ref, limit: 1 });
    const answer = await socket.next((f) => f.ref === ref, WAIT_MS);
    if (answer.type === "messages") return socket;
    await sleep(20);
  }
}

/** An MQTT client of the embedded broker, subscribed to its own receive topic unless told not to. */
async function mqttUser(url: string, urn: string, options: { mode?: "push" | "poke"; subscribe?: boolean } = {}): Promise<MqttTestClient> {
  const c = await mqttConnect(url, { username: options.mode ?? "poke", password: await token(urn) });
  if (options.subscribe !== false) await c.client.subscribeAsync(receiveTopic(urn), { qos: 1 });
  return c;
}

describe("MQTT, embedded broker over TCP", () => {
  let svc: RunningService;
  let url: string;
  const open: MqttTestClient[] = [];
  const track = (c: MqttTestClient): MqttTestClient => (open.push(c), c);

  beforeAll(async () => {
    // A 1 s WebSocket heartbeat: MQTT sessions must not be closed by it (MQTT keepalive rules there).
    svc = await startService({ ROUTING_GATEWAY_ENGINE: "uws", ROUTING_HEARTBEAT_SECONDS: "1", ROUTING_WS_MAX_BUFFER_BYTES: "65536" });
    url = `mqtt://127.0.0.1:${svc.mqttPort}`;
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    expect(await svc?.stop()).toBe(0);
    removeDir(svc.dataDir);
  });

  it("binds an ephemeral MQTT port and names it in the one ready line", () => {
    expect(svc.mqttPort).toBeGreaterThan(0);
    expect(svc.output()).toMatch(new RegExp(`routing ready: http=${svc.port} mqtt=${svc.mqttPort} `));
  });

  it("MQTT -> WebSocket: PUBACK once accepted; the WebSocket recipient gets the stamped envelope", async () => {
    const alice = user("alice");
    const bob = user("bob");
    const bobSocket = await untilOnline(await connect(svc.port, { token: await token(bob), delivery: "push" }));
    const aliceMqtt = track(await mqttUser(url, alice, { subscribe: false }));
    const sent = envelope(bob, { messageId: "m2w-1" });
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(sent), { qos: 1 });
    const frame = await bobSocket.nextOfType("message", WAIT_MS);
    const message = frame.message as QueuedMessageBody;
    expect(message.id).toBe("m2w-1");
    expect(message.envelope).toMatchObject({ ...sent, senderId: alice, isEphemeral: false, priority: 1 });
    // QoS 0 works too (no PUBACK to wait for).
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(bob, { messageId: "m2w-0" })), { qos: 0 });
    await bobSocket.next((f) => f.type === "message" && (f.message as QueuedMessageBody).id === "m2w-0", WAIT_MS);
    await bobSocket.close();
  });

  it("WebSocket -> MQTT: a poke-mode subscriber is poked, a push-mode one gets the message (QoS 1)", async () => {
    const alice = user("alice");
    const bob = user("bob");
    const poke = track(await mqttUser(url, bob));
    const push = track(await mqttUser(url, bob, { mode: "push" }));
    const aliceSocket = await untilOnline(await connect(svc.port, { token: await token(alice) }));
    aliceSocket.send({ type: "send", ref: "s1", envelope: envelope(bob, { messageId: "w2m-1" }) });
    expect(await aliceSocket.nextOfType("sent", WAIT_MS)).toMatchObject({ ref: "s1", messageId: "w2m-1" });
    const poked = await poke.next((r) => r.frame.type === "poke");
    expect(poked.topic).toBe(receiveTopic(bob));
    expect(poked.frame).toEqual({ type: "poke" });
    const got = await push.next((r) => r.frame.type === "message");
    expect((got.frame.message as QueuedMessageBody).id).toBe("w2m-1");
    expect((got.frame.message as QueuedMessageBody).envelope.senderId).toBe(alice);
    await aliceSocket.close();
  });

  it("MQTT -> MQTT, then acks over MQTT: the PUBACK of an ack means it is durable, GET /messages is empty", async () => {
    const alice = user("alice");
    const bob = user("bob");
    const bobMqtt = track(await mqttUser(url, bob, { mode: "push" }));
    const aliceMqtt = track(await mqttUser(url, alice));
    for (const id of ["m2m-1", "m2m-2"]) await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(bob, { messageId: id })), { qos: 1 });
    await bobMqtt.next((r) => r.frame.type === "message" && (r.frame.message as QueuedMessageBody).id === "m2m-2");
    expect(bobMqtt.frames("message").map((f) => (f.message as QueuedMessageBody).id)).toEqual(["m2m-1", "m2m-2"]);
    expect((await messagesOf(svc, bob)).map((m) => m.id)).toEqual(["m2m-1", "m2m-2"]);
    await bobMqtt.client.publishAsync(ackTopic(bob), JSON.stringify({ messageIds: ["m2m-1", "m2m-2", "unknown"] }), { qos: 1 });
    expect(await messagesOf(svc, bob)).toEqual([]);
    // The connection is still there and the gauge counts it as an MQTT session.
    expect(bobMqtt.client.connected).toBe(true);
    const metrics = (await http(svc.url, "GET", "/metrics")).text;
    expect(metrics).toMatch(/routing_sessions\{protocol="mqtt",state="online"\} [1-9]/);
    expect(metrics).toMatch(/routing_envelopes_accepted_total\{path="mqtt"\} [1-9]/);
  });

  it("the WebSocket heartbeat does not close a quiet MQTT session (MQTT keepalive governs it)", async () => {
    const bob = user("bob");
    const quiet = track(await mqttConnect(url, { username: "poke", password: await token(bob), keepalive: 60 }));
    await quiet.client.subscribeAsync(receiveTopic(bob), { qos: 1 });
    await sleep(3_500); // more than two 1 s heartbeat intervals
    expect(quiet.client.connected).toBe(true);
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(bob) });
    expect((await quiet.next((r) => r.frame.type === "poke")).frame).toEqual({ type: "poke" });
  });

  it("refuses CONNECT with a missing, malformed, forged or expired token (CONNACK 4), MQTT 5 (aedes speaks 3.1.1)", async () => {
    const bob = user("bob");
    // One signature character changed: the first (all six of its bits are signature; the last one's low
    // bits are padding a decoder ignores, so changing it failed to forge one token in sixteen).
    const [header, claims, signature] = (await token(bob)).split(".");
    const forged = `${header}.${claims}.${signature[0] === "A" ? "B" : "A"}${signature.slice(1)}`;
    expect(await connackRefusal(url, { username: "poke" })).toBe(4);
    expect(await connackRefusal(url, { username: "poke", password: "not-a-jwt" })).toBe(4);
    expect(await connackRefusal(url, { username: "poke", password: forged })).toBe(4);
    expect(await connackRefusal(url, { username: "poke", password: await token(bob, "-60s") })).toBe(4);
    await expect(mqttConnect(url, { username: "poke", password: await token(bob), protocolVersion: 5 })).rejects.toThrow();
    // The broker keeps serving.
    const ok = track(await mqttUser(url, bob));
    expect(ok.client.connected).toBe(true);
  });

  it("refuses subscribing to anything but one's own receive topic (SUBACK 0x80)", async () => {
    const bob = user("bob");
    const malloryUrn = user("mallory");
    const mallory = track(await mqttUser(url, malloryUrn, { subscribe: false }));
    for (const topic of [receiveTopic(bob), "clients/+/receive", "#", "envelopes/send", ackTopic(bob)]) {
      // mqtt.js calls back with an error and the SUBACK itself (its callback's `granted` echoes the request).
      const refusal = await new Promise<number | undefined>((resolve) =>
        mallory.client.subscribe(topic, { qos: 1 }, (_err, _requested, suback) => resolve(suback?.granted[0] as number | undefined)),
      );
      expect(refusal, topic).toBe(0x80);
    }
    expect(mallory.client.connected).toBe(true);
    // Nothing for Bob reaches Mallory: checked once a later message for Mallory herself did.
    await mallory.client.subscribeAsync(receiveTopic(malloryUrn), { qos: 1 });
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(bob, { isEphemeral: true }) });
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(malloryUrn) });
    await mallory.next((r) => r.topic === receiveTopic(malloryUrn));
    expect(mallory.received.filter((r) => r.topic !== receiveTopic(malloryUrn))).toEqual([]);
  });

  it("refuses publishing to someone's receive topic or a foreign ack topic: the connection is dropped, nothing arrives", async () => {
    const bob = user("bob");
    const bobMqtt = track(await mqttUser(url, bob));
    const mallory = await mqttUser(url, user("mallory"), { subscribe: false });
    mallory.client.publish(receiveTopic(bob), JSON.stringify({ type: "poke" }), { qos: 1 });
    await mallory.closed;

    // Bob has one stored message; Mallory tries to ack it for him.
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(bob, { messageId: "keep-me" }) });
    await bobMqtt.next((r) => r.frame.type === "poke");
    // Mallory's forged poke never reached Bob: the one poke he has is the service's, for the later message.
    expect(bobMqtt.received).toHaveLength(1);
    const mallory2 = await mqttUser(url, user("mallory"), { subscribe: false });
    // No PUBACK ever comes (mqtt.js, not reconnecting, leaves the publish pending): the connection drops.
    mallory2.client.publish(ackTopic(bob), JSON.stringify({ messageIds: ["keep-me"] }), { qos: 1 });
    await mallory2.closed;
    expect((await messagesOf(svc, bob)).map((m) => m.id)).toEqual(["keep-me"]);
    await untilLogged(svc, /"code":"FORBIDDEN","topic":"clients\/urn:sm:user:bob-[^"]+\/ack","msg":"mqtt publish refused: disconnecting"/);
  });

  it("a client id one identity holds cannot be taken over by another (CONNACK 2)", async () => {
    const clientId = `phone-${randomBytes(4).toString("hex")}`;
    const bob = user("bob");
    const bobMqtt = track(await mqttConnect(url, { clientId, username: "poke", password: await token(bob) }));
    expect(await connackRefusal(url, { clientId, username: "poke", password: await token(user("mallory")) })).toBe(2);
    expect(bobMqtt.client.connected).toBe(true);
  });

  it("malformed payloads: dropped (still acknowledged), an error frame on the sender's receive topic, nobody else affected", async () => {
    const alice = user("alice");
    const carol = user("carol");
    const aliceMqtt = track(await mqttUser(url, alice));
    const carolMqtt = track(await mqttUser(url, carol, { mode: "push" }));
    const secret = Buffer.from(`TOP-SECRET-${randomBytes(6).toString("hex")}`).toString("base64");

    await aliceMqtt.client.publishAsync("envelopes/send", `{not json ${secret}`, { qos: 1 });
    expect((await aliceMqtt.next((r) => r.frame.type === "error")).frame).toMatchObject({ type: "error", code: "INVALID_JSON" });
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(carol, { messageId: "bad-1", priority: 99, encryptedData: secret })), {
      qos: 1,
    });
    const invalid = await aliceMqtt.next((r) => r.frame.type === "error" && r.frame.code === "INVALID_ENVELOPE");
    expect(invalid.frame.ref).toBe("bad-1");
    expect(invalid.topic).toBe(receiveTopic(alice));
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(carol, { senderId: "urn:sm:user:eve" })), { qos: 1 });
    await aliceMqtt.next((r) => r.frame.code === "SENDER_MISMATCH");
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(carol, { encryptedData: "A".repeat(70_000) })), { qos: 1 });
    await aliceMqtt.next((r) => r.frame.code === "ENVELOPE_TOO_LARGE");
    await aliceMqtt.client.publishAsync(ackTopic(alice), "[1,2]", { qos: 1 });
    await aliceMqtt.next((r) => r.frame.code === "INVALID_FRAME");

    // Alice is still connected and can send; Carol saw none of it and gets the valid one.
    expect(aliceMqtt.client.connected).toBe(true);
    await aliceMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(carol, { messageId: "good-1" })), { qos: 1 });
    const good = await carolMqtt.next((r) => r.frame.type === "message");
    expect((good.frame.message as QueuedMessageBody).id).toBe("good-1");
    expect(carolMqtt.received).toHaveLength(1);
    expect(carolMqtt.client.connected).toBe(true);
    // Zero knowledge: no payload bytes in any log line (the drops are logged: code and size), error frame or metric.
    await untilLogged(svc, /"code":"INVALID_ENVELOPE","bytes":\d+,"what":"envelope","messageId":"bad-1","msg":"mqtt publish dropped"/);
    expect(svc.output()).not.toContain(secret);
    expect(JSON.stringify(aliceMqtt.received)).not.toContain(secret);
    expect((await http(svc.url, "GET", "/metrics")).text).toMatch(/routing_envelopes_rejected_total\{path="mqtt",code="INVALID_ENVELOPE"\} [1-9]/);
  });

  it("a subscriber that stops reading is disconnected at the send-buffer limit (counted as 4008)", async () => {
    const bob = user("bob");
    const slow = await mqttUser(url, bob, { mode: "push" });
    (slow.client.stream as unknown as net.Socket).pause();
    const closes = async (): Promise<number> =>
      Number(/routing_session_closes_total\{code="4008"\} (\d+)/.exec((await http(svc.url, "GET", "/metrics")).text)?.[1] ?? 0);
    const before = await closes();
    const alice = await token(user("alice"));
    for (let i = 0; i < 400 && (await closes()) === before; i++) {
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { encryptedData: "A".repeat(60_000) }) });
    }
    expect(await closes()).toBe(before + 1);
    await untilLogged(svc, /"code":4008,"reason":"send buffer limit exceeded","msg":"mqtt session ended by the server: disconnecting"/);
    (slow.client.stream as unknown as net.Socket).resume();
    await slow.closed;
  }, 60_000);

  it("a session ends when its token expires: the client is disconnected", async () => {
    const bob = user("bob");
    const brief = await mqttConnect(url, { username: "poke", password: await token(bob, "2s") });
    await brief.client.subscribeAsync(receiveTopic(bob), { qos: 1 });
    await Promise.race([brief.closed, sleep(10_000).then(() => Promise.reject(new Error("still connected")))]);
  }, 15_000);

  it("drops a connection whose packet declares more than the limit, before buffering it", async () => {
    const socket = net.connect(svc.mqttPort!, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    // CONNECT with a remaining length of 10 MiB (varint 0x80 0x80 0x80 0x05), then a little of it.
    socket.write(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x05, 0x00, 0x04]));
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    await untilLogged(svc, /"declaredBytes":10485760,.*"msg":"mqtt packet over the size limit: connection dropped"/);
  });

  it("an unsubscribed client has no session: it can still publish, but is not signalled (no presence)", async () => {
    const bob = user("bob");
    const bobMqtt = track(await mqttUser(url, bob));
    await bobMqtt.client.unsubscribeAsync(receiveTopic(bob));
    await waitFor(async () => ((await http(svc.url, "GET", "/metrics")).text ? true : undefined), "metrics");
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(bob, { isEphemeral: true, messageId: "eph-1" }) });
    // Checked once a later message reached someone else.
    const carolUrn = user("carol");
    const carol = track(await mqttUser(url, carolUrn));
    await http(svc.url, "POST", "/send", { token: await token(user("alice")), body: envelope(carolUrn) });
    await carol.next((r) => r.frame.type === "poke");
    expect(bobMqtt.received).toEqual([]);
    await bobMqtt.client.publishAsync("envelopes/send", JSON.stringify(envelope(user("carol"))), { qos: 1 });
    expect(bobMqtt.client.connected).toBe(true);
  });
});

describe("MQTT port rules (ROUTING_MQTT_PORT), with Mosquitto holding 1883", () => {
  it("a taken default moves to the next free port and says so in one line", async () => {
    // undefined: not passed to the process, so the default (1883) applies.
    const svc = await startService({ ROUTING_MQTT_PORT: undefined as unknown as string });
    try {
      expect(svc.mqttPort).toBeGreaterThan(1883);
      expect(svc.output()).toContain(`mqtt port 1883 is taken; using ${svc.mqttPort} instead`);
    } finally {
      expect(await svc.stop()).toBe(0);
      removeDir(svc.dataDir);
    }
  });

  it("a taken explicit port stops start-up", async () => {
    await expect(startService({ ROUTING_MQTT_PORT: "1883" })).rejects.toThrow(/mqtt port 1883 is already in use \(set explicitly by ROUTING_MQTT_PORT\)/);
  });
});

for (const engine of ["uws", "ws"] as const) {
  describe(`MQTT over WebSocket on the gateway port (${engine} engine)`, () => {
    let svc: RunningService;
    let wsUrl: string;
    beforeAll(async () => {
      svc = await startService({ ROUTING_GATEWAY_ENGINE: engine });
      wsUrl = `ws://127.0.0.1:${svc.port}/mqtt`;
    });
    afterAll(async () => {
      expect(await svc?.stop()).toBe(0);
      removeDir(svc.dataDir);
    });

    it("the upgrade echoes the mqtt subprotocol; without it the answer is 400", async () => {
      const raw = new WebSocket(wsUrl, ["mqtt"]);
      await new Promise<void>((resolve, reject) => {
        raw.once("open", () => resolve());
        raw.once("error", reject);
      });
      expect(raw.protocol).toBe("mqtt");
      raw.close();
      const refused = await new Promise<number>((resolve, reject) => {
        const bare = new WebSocket(wsUrl);
        bare.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        bare.once("open", () => reject(new Error("opened without a subprotocol")));
        bare.once("error", () => {});
      });
      expect(refused).toBe(400);
    });

    it("MQTT over WebSocket both ways: to an MQTT-over-TCP client and a WebSocket session, acks included", async () => {
      const alice = user("alice");
      const bob = user("bob");
      const aliceWs = await mqttConnect(wsUrl, { username: "push", password: await token(alice) });
      await aliceWs.client.subscribeAsync(receiveTopic(alice), { qos: 1 });
      const bobTcp = await mqttUser(`mqtt://127.0.0.1:${svc.mqttPort}`, bob, { mode: "push" });
      await aliceWs.client.publishAsync("envelopes/send", JSON.stringify(envelope(bob, { messageId: "ws-1" })), { qos: 1 });
      expect(((await bobTcp.next((r) => r.frame.type === "message")).frame.message as QueuedMessageBody).id).toBe("ws-1");
      await bobTcp.client.publishAsync("envelopes/send", JSON.stringify(envelope(alice, { messageId: "tcp-1" })), { qos: 1 });
      expect(((await aliceWs.next((r) => r.frame.type === "message")).frame.message as QueuedMessageBody).id).toBe("tcp-1");
      const bobSocket = await untilOnline(await connect(svc.port, { token: await token(bob) }));
      await aliceWs.client.publishAsync("envelopes/send", JSON.stringify(envelope(bob, { messageId: "ws-2" })), { qos: 1 });
      expect(await bobSocket.nextOfType("poke", WAIT_MS)).toEqual({ type: "poke" });
      await aliceWs.client.publishAsync(ackTopic(alice), JSON.stringify({ messageIds: ["tcp-1"] }), { qos: 1 });
      expect(await messagesOf(svc, alice)).toEqual([]);
      expect(await connackRefusal(wsUrl, { username: "poke", password: "garbage" })).toBe(4);
      await Promise.all([aliceWs.end(), bobTcp.end(), bobSocket.close()]);
    });
  });
}

describe("QoS 1 PUBACK only after the ingress bus accepted (in-process, bus under the test's control)", () => {
  type Held = { resolve: () => void; reject: (err: unknown) => void };
  let failing = false;
  const held: Held[] = [];
  const bus: IngressBus = {
    publish: () =>
      new Promise<void>((resolve, reject) => {
        if (failing) reject(new RoutingError("BACKEND_UNAVAILABLE", "ingress bus: publish failed"));
        else held.push({ resolve, reject });
      }),
    consume: () => ({ pause() {}, resume() {}, close: async () => {} }),
    stats: async () => ({ backlog: 0, inFlight: 0, deadLetters: 0, oldestUnackedAgeMs: 0 }),
    deadLetters: async () => [],
    replayDeadLetters: async () => 0,
    dropDeadLetters: async () => 0,
    ready: async () => true,
    close: async () => {},
  };
  const metrics = createMetrics();
  const mailbox = createMemoryMailbox({ dedupTtlMs: 60_000 });
  const silent = { info() {}, warn() {}, debug() {} };
  let mqtt: MqttRuntime;
  let url: string;

  beforeAll(async () => {
    const presence = createMemoryPresenceStore({ ttlMs: 30_000 });
    const sessions = createSessionHost({
      instanceId: "puback-test",
      presence,
      metrics,
      maxBufferBytes: 1 << 20,
      authTimeoutMs: 5_000,
      heartbeatMs: 30_000,
      drainTimeoutMs: 1_000,
      log: silent,
    });
    mqtt = createMqtt({
      instanceId: "puback-test",
      host: "127.0.0.1",
      port: 0,
      portExplicit: true,
      url: undefined,
      topics: { ingest: "envelopes/send", receive: "clients/{urn}/receive", ack: "clients/{urn}/ack" },
      shareGroup: "routing",
      wsPath: "/mqtt",
      maxEnvelopeBytes: 65_536,
      connectTimeoutMs: 5_000,
      verifier: createTokenVerifier({ secret: TEST_SECRET }),
      ingress: createIngress({ bus, maxEnvelopeBytes: 65_536, metrics }),
      mailbox,
      sessions,
      log: silent,
    });
    url = `mqtt://127.0.0.1:${(await mqtt.start()).replace("mqtt=", "")}`;
  });
  afterAll(async () => {
    await mqtt?.close();
    await mailbox.close();
  });

  it("positive control: the PUBACK waits while the bus holds the publish, and comes once it accepted", async () => {
    const alice = await mqttConnect(url, { username: "poke", password: await token(user("alice")) });
    let acked = false;
    const publish = alice.client.publishAsync("envelopes/send", JSON.stringify(envelope(user("bob"))), { qos: 1 }).then(() => (acked = true));
    await waitFor(async () => (held.length === 1 ? true : undefined), "the bus to get the publish");
    await sleep(500);
    expect(acked).toBe(false);
    held.shift()!.resolve();
    await publish;
    expect(acked).toBe(true);
    expect(alice.client.connected).toBe(true);
    await alice.end();
  });

  it("a bus failure: no PUBACK within a bounded wait, the connection is dropped (no silent success)", async () => {
    failing = true;
    try {
      const alice = await mqttConnect(url, { username: "poke", password: await token(user("alice")) });
      let acked = false;
      alice.client.publish("envelopes/send", JSON.stringify(envelope(user("bob"))), { qos: 1 }, (err) => {
        if (!err) acked = true;
      });
      await Promise.race([alice.closed, sleep(5_000).then(() => Promise.reject(new Error("the connection was not dropped")))]);
      await sleep(300);
      expect(acked).toBe(false);
      expect(await metrics.registry.getSingleMetricAsString("routing_envelopes_rejected_total")).toContain('path="mqtt",code="BACKEND_UNAVAILABLE"} 1');
    } finally {
      failing = false;
    }
  });

  it("a bus that holds an ack-less publish keeps it unacknowledged while later connections are served", async () => {
    const alice = await mqttConnect(url, { username: "poke", password: await token(user("alice")) });
    let acked = false;
    alice.client.publish("envelopes/send", JSON.stringify(envelope(user("bob"))), { qos: 1 }, () => (acked = true));
    await waitFor(async () => (held.length === 1 ? true : undefined), "the bus to get the publish");
    const other = await mqttConnect(url, { username: "poke", password: await token(user("carol")) });
    expect(other.client.connected).toBe(true);
    await sleep(300);
    expect(acked).toBe(false);
    held.shift()!.reject(new RoutingError("BACKEND_UNAVAILABLE", "ingress bus: publish failed"));
    await alice.closed;
    expect(acked).toBe(false);
    expect(other.client.connected).toBe(true);
    await other.end();
  });
});

/**
 * External broker mode against the machine's Mosquitto. Every run uses its own topic prefix and
 * share group, so parallel runs and other users of that broker never see each other's traffic.
 */
describe("MQTT through an external broker (Mosquitto on 127.0.0.1:1883)", () => {
  const MOSQUITTO = "mqtt://127.0.0.1:1883";
  const run = randomBytes(4).toString("hex");
  const prefix = `test-${run}`;
  const topicEnv = (group: string): Record<string, string> => ({
    ROUTING_MQTT_URL: MOSQUITTO,
    ROUTING_MQTT_INGEST_TOPIC: `${prefix}/envelopes/send`,
    ROUTING_MQTT_RECEIVE_TOPIC: `${prefix}/clients/{urn}/receive`,
    ROUTING_MQTT_ACK_TOPIC: `${prefix}/clients/{urn}/ack`,
    ROUTING_MQTT_SHARE_GROUP: `${group}-${run}`,
  });
  const ingestTopic = (sender: string): string => `${prefix}/envelopes/send/${sender}`;
  const receiveAt = (urn: string): string => `${prefix}/clients/${urn}/receive`;

  /** A client of Mosquitto itself (anonymous there: its ACL is the deployer's, see the README). */
  async function brokerClient(subscribeTo?: string): Promise<MqttTestClient> {
    const c = await mqttConnect(MOSQUITTO, { clientId: `t-${run}-${randomBytes(3).toString("hex")}` });
    if (subscribeTo !== undefined) await c.client.subscribeAsync(subscribeTo, { qos: 1 });
    return c;
  }

  async function metric(svc: RunningService, pattern: RegExp): Promise<number> {
    const text = (await http(svc.url, "GET", "/metrics")).text;
    let sum = 0;
    for (const line of text.split("\n")) {
      const m = pattern.exec(line);
      if (m) sum += Number(m[1]);
    }
    return sum;
  }

  it("a routing node with ROUTING_MQTT_URL: HTTP -> poke on the broker; broker -> its mailbox; acks over the broker", async () => {
    const svc = await startService({ ...topicEnv("node"), ROUTING_INSTANCE_ID: `node-${run}` });
    try {
      expect(svc.mqttPort).toBeUndefined();
      expect(svc.output()).toMatch(/routing ready: http=\d+ mqtt=external /);
      const alice = user("alice");
      const bob = user("bob");
      const bobListens = await brokerClient(receiveAt(bob));
      expect((await http(svc.url, "POST", "/send", { token: await token(alice), body: envelope(bob, { messageId: "h2m-1" }) })).status).toBe(202);
      expect((await bobListens.next((r) => r.frame.type === "poke")).topic).toBe(receiveAt(bob));

      const aliceSends = await brokerClient(receiveAt(alice));
      await aliceSends.client.publishAsync(ingestTopic(alice), JSON.stringify(envelope(bob, { messageId: "m2h-1" })), { qos: 1 });
      const ids = await waitFor(async () => {
        const got = (await messagesOf(svc, bob)).map((m) => m.id);
        return got.length === 2 ? got : undefined;
      }, "both messages in the mailbox");
      expect(ids.sort()).toEqual(["h2m-1", "m2h-1"]);
      const stored = (await messagesOf(svc, bob)).find((m) => m.id === "m2h-1");
      expect(stored?.envelope.senderId).toBe(alice);

      // A malformed publish: an error frame on the sender's receive topic; a sender level that is no URN: dropped.
      await aliceSends.client.publishAsync(ingestTopic(alice), "{oops", { qos: 1 });
      expect((await aliceSends.next((r) => r.frame.type === "error")).frame).toMatchObject({ code: "INVALID_JSON" });
      await bobListens.client.publishAsync(`${prefix}/clients/${bob}/ack`, JSON.stringify({ messageIds: ["h2m-1", "m2h-1"] }), { qos: 1 });
      await waitFor(async () => ((await messagesOf(svc, bob)).length === 0 ? true : undefined), "the acks to empty the mailbox");
      await Promise.all([bobListens.end(), aliceSends.end()]);
    } finally {
      expect(await svc.stop()).toBe(0);
      removeDir(svc.dataDir);
    }
  });

  it("two bridge processes share the ingest load: N envelopes, each routed exactly once, both took some", async () => {
    const N = 60;
    const env = topicEnv("bridges");
    const bridges = await Promise.all(
      ["a", "b"].map((id) => startService({ ...env, ROUTING_INSTANCE_ID: `bridge-${id}-${run}` }, undefined, { entry: "bin/mqtt-bridge.ts" })),
    );
    const dirs = bridges.map((b) => b.dataDir);
    try {
      for (const b of bridges) expect(b.output()).toMatch(/routing ready: http=\d+ mqtt=external role=mqtt-bridge routes=true /);
      const alice = user("alice");
      const bob = user("bob");
      const bobListens = await brokerClient(receiveAt(bob));
      const sender = await brokerClient();
      await Promise.all(
        Array.from({ length: N }, (_, i) =>
          sender.client.publishAsync(ingestTopic(alice), JSON.stringify(envelope(bob, { messageId: `share-${i}` })), { qos: 1 }),
        ),
      );
      // Each routed message pokes Bob once, from whichever bridge routed it.
      await waitFor(async () => (bobListens.frames("poke").length >= N ? true : undefined), `${N} pokes`, 20_000);
      const accepted = await Promise.all(bridges.map((b) => metric(b, /^routing_envelopes_accepted_total\{path="mqtt"\} (\d+)/)));
      const routed = await Promise.all(bridges.map((b) => metric(b, /^routing_routed_total\{outcome="[a-z_]+"\} (\d+)/)));
      const duplicates = await Promise.all(bridges.map((b) => metric(b, /^routing_routed_total\{outcome="duplicate"\} (\d+)/)));
      expect(accepted[0] + accepted[1]).toBe(N);
      expect(accepted[0]).toBeGreaterThan(0);
      expect(accepted[1]).toBeGreaterThan(0);
      expect(routed[0] + routed[1]).toBe(N);
      expect(duplicates).toEqual([0, 0]);
      // No poke twice: checked once a later envelope's poke arrived.
      await sender.client.publishAsync(ingestTopic(alice), JSON.stringify(envelope(bob, { messageId: "share-last" })), { qos: 1 });
      await waitFor(async () => (bobListens.frames("poke").length >= N + 1 ? true : undefined), "the last poke", 20_000);
      expect(bobListens.frames("poke")).toHaveLength(N + 1);
      await Promise.all([bobListens.end(), sender.end()]);
      for (const b of bridges) expect(await b.stop()).toBe(0);

      // The bridges route into their own (embedded) stores: together they hold every message once.
      const ids: string[] = [];
      for (const dataDir of dirs) {
        const db = openSqliteDb({ dataDir, sync: "normal" });
        const mailbox = createSqliteMailbox(db, { dedupTtlMs: 60_000 });
        ids.push(...(await mailbox.fetch(bob as Urn, 500)).map((e) => e.messageId));
        await mailbox.close();
        db.close();
      }
      expect(ids).toHaveLength(N + 1); // with share-last
      expect(new Set(ids).size).toBe(N + 1);
    } finally {
      await Promise.all(bridges.map((b) => b.stop()));
      for (const dir of dirs) removeDir(dir);
    }
  }, 60_000);

  it("the bridge refuses to start without ROUTING_MQTT_URL", async () => {
    await expect(startService({}, undefined, { entry: "bin/mqtt-bridge.ts" })).rejects.toThrow(/needs ROUTING_MQTT_URL/);
  });
});
