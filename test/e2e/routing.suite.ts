import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignJWT } from "jose";
import { CLOSE } from "../../core/close-codes.ts";
import { connect, envelope, http, type Frame, type QueuedMessageBody } from "../helpers/clients.ts";
import { removeDir, startService, TEST_SECRET, token, tokenWithSubject, type RunningService } from "../helpers/service.ts";

let users = 0;
/** A fresh identity per test, so tests on one service never see each other's messages. */
function user(name: string): string {
  return `urn:sm:user:${name}-${++users}-${Math.random().toString(36).slice(2, 8)}`;
}

async function tokenFor(urn: string): Promise<string> {
  return token(urn);
}

/** The contract's flows, over real HTTP and WebSocket clients, against a service process on the given engine. */
export function describeRoutingE2E(engine: "uws" | "ws"): void {
  describe(`routing service end to end (${engine} engine)`, () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_HEARTBEAT_SECONDS: "1", ROUTING_WS_MAX_BUFFER_BYTES: "65536" });
    });
    afterAll(async () => {
      const code = await svc?.stop();
      expect(code).toBe(0);
      removeDir(svc.dataDir);
    });

    it("health, readiness and metrics answer without a token", async () => {
      expect((await http(svc.url, "GET", "/healthz")).status).toBe(200);
      expect((await http(svc.url, "GET", "/readyz")).status).toBe(200);
      const metrics = await http(svc.url, "GET", "/metrics");
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain("routing_envelopes_accepted_total");
      expect(svc.output()).toContain(`engine=${engine}`);
    });

    it("poke, then pull, then ack", async () => {
      const alice = user("alice");
      const bob = user("bob");
      const bobSocket = await connect(svc.port, { token: await tokenFor(bob) });
      const sent = envelope(bob, { priority: 1 });
      const res = await http(svc.url, "POST", "/send", { token: await tokenFor(alice), body: sent });
      expect(res.status).toBe(202);
      expect(typeof res.body.messageId).toBe("string");
      expect(await bobSocket.nextOfType("poke")).toEqual({ type: "poke" });

      const bobToken = await tokenFor(bob);
      const pulled = await http(svc.url, "GET", "/messages", { token: bobToken });
      expect(pulled.status).toBe(200);
      expect(pulled.body.messages).toHaveLength(1);
      const message = pulled.body.messages![0];
      expect(message.id).toBe(res.body.messageId);
      expect(Number.isNaN(Date.parse(message.queuedAt))).toBe(false);
      expect(message.envelope).toMatchObject({ ...sent, senderId: alice, messageId: res.body.messageId, isEphemeral: false, priority: 1 });

      // Still there until acked.
      expect((await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages).toHaveLength(1);
      const ack = await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: [message.id, "unknown-id"] } });
      expect(ack.status).toBe(204);
      expect((await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: [message.id] } })).status).toBe(204);
      const empty = await http(svc.url, "GET", "/messages", { token: bobToken });
      expect(empty.text).toBe('{"messages":[]}');
      await bobSocket.close();
    });

    it("push mode delivers the message itself, which still waits for an ack; socket fetch and ack", async () => {
      const alice = user("alice");
      const bob = user("bob");
      const bobSocket = await connect(svc.port, { token: await tokenFor(bob), delivery: "push" });
      const sent = envelope(bob, { messageId: "push-1" });
      expect((await http(svc.url, "POST", "/send", { token: await tokenFor(alice), body: sent })).status).toBe(202);
      const frame = await bobSocket.nextOfType("message");
      const message = frame.message as QueuedMessageBody;
      expect(message.id).toBe("push-1");
      expect(message.envelope).toMatchObject({ ...sent, senderId: alice });

      bobSocket.send({ type: "fetch", ref: "f1", limit: 10 });
      const listed = await bobSocket.nextOfType("messages");
      expect(listed.ref).toBe("f1");
      expect((listed.messages as QueuedMessageBody[]).map((m) => m.id)).toEqual(["push-1"]);

      bobSocket.send({ type: "ack", messageIds: ["push-1"] });
      bobSocket.send({ type: "fetch", ref: "f2" });
      const after = await bobSocket.next((f) => f.type === "messages" && f.ref === "f2");
      expect(after.messages).toEqual([]);
      await bobSocket.close();
    });

    it("socket send answers `sent` with the ref, and the recipient gets it", async () => {
      const alice = user("alice");
      const bob = user("bob");
      const aliceSocket = await connect(svc.port, { token: await tokenFor(alice) });
      const bobSocket = await connect(svc.port, { token: await tokenFor(bob), delivery: "push" });
      aliceSocket.send({ type: "send", ref: "c1", envelope: envelope(bob) });
      const sent = await aliceSocket.nextOfType("sent");
      expect(sent).toMatchObject({ type: "sent", ref: "c1" });
      const got = await bobSocket.nextOfType("message");
      expect((got.message as QueuedMessageBody).id).toBe(sent.messageId);
      expect((got.message as QueuedMessageBody).envelope.senderId).toBe(alice);
      await aliceSocket.close();
      await bobSocket.close();
    });

    it("the same messageId twice is stored and delivered once, and both sends get 202 with that id", async () => {
      const alice = await tokenFor(user("alice"));
      const bob = user("bob");
      const bobToken = await tokenFor(bob);
      const bobSocket = await connect(svc.port, { token: bobToken, delivery: "push" });
      const first = await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "dup-1" }) });
      const second = await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "dup-1" }) });
      expect([first.status, second.status]).toEqual([202, 202]);
      expect([first.body.messageId, second.body.messageId]).toEqual(["dup-1", "dup-1"]);
      // A marker sent after both: once it arrives, both earlier records have been routed.
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "marker" }) });
      await bobSocket.next((f) => f.type === "message" && (f.message as QueuedMessageBody).id === "marker");
      const deliveries = bobSocket.frames.filter((f) => f.type === "message" && (f.message as QueuedMessageBody).id === "dup-1");
      expect(deliveries).toHaveLength(1);
      const pulled = await http(svc.url, "GET", "/messages", { token: bobToken });
      expect(pulled.body.messages!.map((m) => m.id)).toEqual(["dup-1", "marker"]);
      // Acked, then sent again: still a duplicate.
      await http(svc.url, "POST", "/messages/ack", { token: bobToken, body: { messageIds: ["dup-1", "marker"] } });
      expect((await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "dup-1" }) })).status).toBe(202);
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "marker-2" }) });
      await bobSocket.next((f) => f.type === "message" && (f.message as QueuedMessageBody).id === "marker-2");
      expect((await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages!.map((m) => m.id)).toEqual(["marker-2"]);
      await bobSocket.close();
    });

    it("high priority jumps the queue; otherwise oldest first; limit applies", async () => {
      const alice = await tokenFor(user("alice"));
      const bob = user("bob");
      const bobToken = await tokenFor(bob);
      for (const [id, priority] of [
        ["low-1", 1],
        ["low-2", 0],
        ["high-1", 5],
        ["low-3", 4],
        ["high-2", 10],
      ] as const) {
        expect((await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: id, priority }) })).status).toBe(202);
      }
      let ids: string[] = [];
      for (let i = 0; i < 50 && ids.length < 5; i++) {
        ids = (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages!.map((m) => m.id);
        if (ids.length < 5) await new Promise((r) => setTimeout(r, 50));
      }
      expect(ids).toEqual(["high-1", "high-2", "low-1", "low-2", "low-3"]);
      const limited = await http(svc.url, "GET", "/messages?limit=2", { token: bobToken });
      expect(limited.body.messages!.map((m) => m.id)).toEqual(["high-1", "high-2"]);
    });

    it("ephemeral: delivered to online sessions in either mode, never stored; dropped when offline", async () => {
      const alice = await tokenFor(user("alice"));
      const bob = user("bob");
      const bobToken = await tokenFor(bob);
      const poke = await connect(svc.port, { token: bobToken });
      const push = await connect(svc.port, { token: bobToken, delivery: "push" });
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "typing-1", isEphemeral: true }) });
      for (const socket of [poke, push]) {
        const frame = await socket.nextOfType("message");
        expect((frame.message as QueuedMessageBody).id).toBe("typing-1");
      }
      expect(poke.frames.some((f) => f.type === "poke")).toBe(false);
      await poke.close();
      await push.close();
      // Offline now.
      expect((await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "typing-2", isEphemeral: true }) })).status).toBe(202);
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "stored-after" }) });
      let ids: string[] = [];
      for (let i = 0; i < 50 && ids.length === 0; i++) {
        ids = (await http(svc.url, "GET", "/messages", { token: bobToken })).body.messages!.map((m) => m.id);
        if (ids.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(ids).toEqual(["stored-after"]);
    });

    it("every session of the recipient is signalled", async () => {
      const alice = await tokenFor(user("alice"));
      const bob = user("bob");
      const bobToken = await tokenFor(bob);
      const sockets = await Promise.all([
        connect(svc.port, { token: bobToken }),
        connect(svc.port, { token: bobToken }),
        connect(svc.port, { token: bobToken, via: "protocol" }),
      ]);
      await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob) });
      for (const socket of sockets) expect(await socket.nextOfType("poke")).toEqual({ type: "poke" });
      await Promise.all(sockets.map((s) => s.close()));
    });

    it("the subprotocol carries the token for browsers and is echoed", async () => {
      const socket = await connect(svc.port, { token: await tokenFor(user("web")), via: "protocol" });
      expect(socket.ws.protocol.length).toBeGreaterThan(20);
      await socket.close();
    });

    it("a bad token never gets a 101", async () => {
      const expired = await token(user("late"), "-60s");
      const forged = await new SignJWT({ sub: "mallory" })
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode("another-secret-0123456789abcdef"));
      const cases: Array<[string | undefined, "header" | "protocol"]> = [
        [undefined, "header"],
        ["garbage", "header"],
        [expired, "header"],
        [forged, "protocol"],
        [await tokenWithSubject("urn:sm:user"), "header"],
      ];
      for (const [tok, via] of cases) {
        const refused = await connect(svc.port, { token: tok, via }).then(
          () => undefined,
          (err: { status?: number; body?: string }) => err,
        );
        expect(refused?.status).toBe(401);
      }
      const badMode = await connect(svc.port, { token: await tokenFor(user("x")), delivery: "sideways" as "push" }).catch((e: { status?: number }) => e);
      expect((badMode as { status?: number }).status).toBe(400);
    });

    it("HTTP bad input gets the contract's codes", async () => {
      const alice = user("alice");
      const t = await tokenFor(alice);
      const bob = user("bob");
      const expect400 = async (body: unknown, code: string, raw?: string) => {
        const res = await http(svc.url, "POST", "/send", { token: t, body, raw });
        expect(res.status, JSON.stringify(res.body)).toBe(code === "SENDER_MISMATCH" ? 403 : 400);
        expect(res.body.error?.code).toBe(code);
        expect(typeof res.body.error?.message).toBe("string");
      };
      await expect400(undefined, "INVALID_JSON", "{not json");
      await expect400({ recipientId: bob }, "INVALID_ENVELOPE");
      await expect400(envelope("bob"), "INVALID_ENVELOPE");
      await expect400(envelope("urn:sm:user"), "INVALID_ENVELOPE");
      await expect400(envelope(bob, { priority: 11 }), "INVALID_ENVELOPE");
      await expect400(envelope(bob, { messageId: "has space" }), "INVALID_ENVELOPE");
      await expect400(envelope(bob, { encryptedData: "not base64!!" }), "INVALID_ENVELOPE");
      await expect400(envelope(bob, { extra: 1 }), "INVALID_ENVELOPE");
      await expect400(envelope(bob, { senderId: "urn:sm:user:someone-else" }), "SENDER_MISMATCH");
      // An error never echoes payload bytes.
      const secret = Buffer.from("TOP-SECRET-BYTES").toString("base64");
      const leaky = await http(svc.url, "POST", "/send", { token: t, body: envelope(bob, { encryptedData: secret, priority: "x" }) });
      expect(leaky.text).not.toContain(secret);

      const big = await http(svc.url, "POST", "/send", { token: t, body: envelope(bob, { encryptedData: "A".repeat(70_000) }) });
      expect(big.status).toBe(413);
      expect(big.body.error?.code).toBe("ENVELOPE_TOO_LARGE");

      const own = await http(svc.url, "POST", "/send", { token: t, body: envelope(bob, { senderId: alice }) });
      expect(own.status).toBe(202);

      expect((await http(svc.url, "POST", "/send", { body: envelope(bob) })).body.error?.code).toBe("TOKEN_MISSING");
      expect((await http(svc.url, "POST", "/send", { token: "x.y.z", body: envelope(bob) })).status).toBe(401);
      const expired = await http(svc.url, "POST", "/send", { token: await token(alice, "-10s"), body: envelope(bob) });
      expect([expired.status, expired.body.error?.code]).toEqual([401, "TOKEN_EXPIRED"]);
      const badSub = await http(svc.url, "GET", "/messages", { token: await tokenWithSubject("urn:sm::x") });
      expect([badSub.status, badSub.body.error?.code]).toEqual([401, "INVALID_IDENTITY"]);
      const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"sub":"alice"}').toString("base64url")}.`;
      expect((await http(svc.url, "GET", "/messages", { token: unsigned })).status).toBe(401);

      for (const limit of ["0", "501", "abc", "1.5"]) {
        const res = await http(svc.url, "GET", `/messages?limit=${limit}`, { token: t });
        expect([res.status, res.body.error?.code]).toEqual([400, "INVALID_REQUEST"]);
      }
      expect((await http(svc.url, "POST", "/messages/ack", { token: t, body: { ids: [] } })).status).toBe(400);
      expect((await http(svc.url, "POST", "/messages/ack", { token: t, raw: "[" })).body.error?.code).toBe("INVALID_JSON");
      expect((await http(svc.url, "GET", "/nope", { token: t })).status).toBe(404);
      expect((await http(svc.url, "DELETE", "/send", { token: t })).status).toBe(405);
      // The service keeps serving.
      expect((await http(svc.url, "POST", "/send", { token: t, body: envelope(bob) })).status).toBe(202);
    });

    it("socket bad input gets error frames with the ref; the session keeps serving", async () => {
      const alice = user("alice");
      const socket = await connect(svc.port, { token: await tokenFor(alice) });
      socket.send("{oops");
      expect(await socket.nextOfType("error")).toMatchObject({ code: "INVALID_JSON" });
      socket.send({ type: "dance", ref: "r1" });
      expect(await socket.nextOfType("error")).toMatchObject({ ref: "r1", code: "INVALID_FRAME" });
      socket.send({ type: "send", ref: "r2", envelope: { recipientId: "nobody" } });
      expect(await socket.nextOfType("error")).toMatchObject({ ref: "r2", code: "INVALID_ENVELOPE" });
      socket.send({ type: "send", ref: "r3", envelope: envelope(user("bob"), { senderId: "urn:sm:user:eve" }) });
      expect(await socket.nextOfType("error")).toMatchObject({ ref: "r3", code: "SENDER_MISMATCH" });
      socket.send({ type: "send", ref: "r4", envelope: envelope(user("bob"), { encryptedData: "A".repeat(66_000) }) });
      expect(await socket.nextOfType("error")).toMatchObject({ ref: "r4", code: "ENVELOPE_TOO_LARGE" });
      socket.send({ type: "fetch", ref: "r5", limit: 9999 });
      expect(await socket.nextOfType("error")).toMatchObject({ ref: "r5", code: "INVALID_FRAME" });
      socket.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      expect(await socket.nextOfType("error")).toMatchObject({ code: "INVALID_FRAME" });
      socket.send({ type: "send", ref: "ok", envelope: envelope(user("bob")) });
      expect(await socket.nextOfType("sent")).toMatchObject({ ref: "ok" });
      await socket.close();
    });

    it("device tokens register and unregister", async () => {
      const t = await tokenFor(user("phone"));
      expect((await http(svc.url, "POST", "/register-device", { token: t, body: { token: "fcm-token-1", platform: "fcm" } })).status).toBe(204);
      expect((await http(svc.url, "POST", "/register-device", { token: t, body: { token: "x", platform: "pager" } })).status).toBe(400);
      expect((await http(svc.url, "DELETE", "/register-device", { token: t, body: { token: "fcm-token-1" } })).status).toBe(204);
      expect((await http(svc.url, "POST", "/register-device", { body: { token: "x", platform: "fcm" } })).status).toBe(401);
    });

    it("the server pings; a client that never pongs is closed with HEARTBEAT_TIMEOUT", async () => {
      const t = await tokenFor(user("sleepy"));
      const live = await connect(svc.port, { token: t });
      const pinged = new Promise<void>((resolve) => live.ws.once("ping", () => resolve()));
      const dead = await connect(svc.port, { token: t, autoPong: false });
      await pinged;
      const { code } = await dead.closed;
      expect(code).toBe(CLOSE.HEARTBEAT_TIMEOUT);
      expect(live.ws.readyState).toBe(live.ws.OPEN);
      await live.close();
    });

    it("a slow reader is closed with SLOW_CONSUMER instead of buffering without bound", async () => {
      const alice = await tokenFor(user("alice"));
      const bob = user("bob");
      const slow = await connect(svc.port, { token: await tokenFor(bob), delivery: "push" });
      const socket = (slow.ws as unknown as { _socket: { pause(): void } })._socket;
      socket.pause();
      const closed = slow.closed;
      // The client reads nothing, so it cannot see the close either: watch the server's own count.
      const slowClosures = async () =>
        Number(/routing_session_closes_total\{code="4008"\} (\d+)/.exec((await http(svc.url, "GET", "/metrics")).text)?.[1] ?? 0);
      const before = await slowClosures();
      for (let i = 0; i < 400; i++) {
        await http(svc.url, "POST", "/send", { token: alice, body: envelope(bob, { encryptedData: "A".repeat(60_000) }) });
        if (i % 10 === 9 && (await slowClosures()) > before) break;
      }
      expect(await slowClosures()).toBe(before + 1);
      (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      expect((await closed).code).toBe(CLOSE.SLOW_CONSUMER);
    }, 60_000);
  });
}

export type { Frame };
export { TEST_SECRET };
