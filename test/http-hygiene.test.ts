import { randomUUID } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, envelope, http } from "./helpers/clients.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";

/*
 * HTTP hygiene (issue 14) on both engines: a slow body is answered 408 and dropped, slow headers
 * are dropped, requests still being read are capped (503 OVERLOADED past the cap), and JSON that
 * nests too deep is refused before it is parsed.
 */

/** Writes `text` on a raw socket; resolves everything the server wrote once it closed the connection. */
function rawUntilClosed(port: number, text: string): { socket: net.Socket; answer: Promise<string> } {
  const socket = net.connect(port, "127.0.0.1");
  let got = "";
  socket.on("data", (c) => (got += c.toString("latin1")));
  socket.on("error", () => {});
  const answer = new Promise<string>((resolve) => socket.once("close", () => resolve(got)));
  socket.write(text);
  return { socket, answer };
}

/** Resolves the first bytes the server answers on `socket`. */
function firstAnswer(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => socket.once("data", (c) => resolve(c.toString("latin1"))));
}

for (const engine of ["uws", "ws"] as const) {
  describe(`HTTP hygiene (${engine} engine)`, () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({
        ROUTING_GATEWAY_ENGINE: engine,
        ROUTING_HTTP_BODY_TIMEOUT_MS: "300",
        ROUTING_HTTP_HEADER_TIMEOUT_MS: "1000",
        ROUTING_MAX_UNAUTHENTICATED_SOCKETS: "4",
      });
    }, 60_000);
    afterAll(async () => {
      await svc?.stop();
      if (svc) removeDir(svc.dataDir);
    });

    it("answers a body that does not arrive in time with 408 and drops the connection", async () => {
      const tok = await token(`slow-${randomUUID()}`);
      const { answer } = rawUntilClosed(
        svc.port,
        `POST /send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"recipi`,
      );
      const text = await answer;
      expect(text).toMatch(/^HTTP\/1\.1 408/);
      expect(text).toContain("REQUEST_TIMEOUT");
      // The service keeps serving.
      expect((await http(svc.url, "GET", "/healthz")).status).toBe(200);
    });

    // ws: ROUTING_HTTP_HEADER_TIMEOUT_MS (1 s here); uws: uWebSockets' own fixed ~10 s, even while headers trickle in.
    it("drops a connection whose headers do not arrive in time", async () => {
      const socket = net.connect(svc.port, "127.0.0.1");
      socket.on("error", () => {});
      socket.resume();
      const closed = new Promise((r) => socket.once("close", r));
      socket.write("POST /send HTTP/1.1\r\nHost: x\r\n");
      const trickle = setInterval(() => socket.write("X-Slow: 1\r\n"), 500);
      await closed;
      clearInterval(trickle);
      expect((await http(svc.url, "GET", "/healthz")).status).toBe(200);
    }, 20_000);

    it("caps requests still being read: one more gets 503 OVERLOADED, and the cap frees when they end", async () => {
      const held = Array.from({ length: 4 }, () => {
        const socket = net.connect(svc.port, "127.0.0.1");
        socket.on("error", () => {});
        // Flowing, so its close is seen once the server answered.
        socket.resume();
        socket.write("POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{");
        return socket;
      });
      // Connected and written before the fifth connects: the server reads them first.
      await Promise.all(held.map((s) => new Promise((r) => (s.connecting ? s.once("connect", r) : r(undefined)))));
      const fifth = net.connect(svc.port, "127.0.0.1");
      fifth.on("error", () => {});
      fifth.write("POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{");
      const answer = await firstAnswer(fifth);
      expect(answer).toMatch(/^HTTP\/1\.1 503/);
      expect(answer).toContain("OVERLOADED");
      fifth.destroy();
      // The held ones time out (408) and their places come back.
      await Promise.all(held.map((s) => new Promise((r) => s.once("close", r))));
      const tok = await token(`after-${randomUUID()}`);
      expect((await http(svc.url, "POST", "/send", { token: tok, body: envelope(`urn:sm:user:r-${randomUUID()}`) })).status).toBe(202);
    });

    it("refuses JSON nested deeper than the bound before parsing it (HTTP body and WebSocket frame)", async () => {
      const tok = await token(`deep-${randomUUID()}`);
      const deep = "[".repeat(5000) + "]".repeat(5000);
      const res = await http(svc.url, "POST", "/send", { token: tok, raw: deep });
      expect(res.status).toBe(400);
      expect(res.body.error?.code).toBe("INVALID_JSON");
      const socket = await connect(svc.port, { token: tok });
      socket.send(`{"type":"send","ref":"d1","envelope":${'{"a":'.repeat(40)}1${"}".repeat(40)}}`);
      const frame = await socket.nextOfType("error");
      expect(frame.code).toBe("INVALID_JSON");
      // The same socket keeps being served.
      socket.send({ type: "send", ref: "ok1", envelope: envelope(`urn:sm:user:r-${randomUUID()}`) });
      expect((await socket.nextOfType("sent")).ref).toBe("ok1");
      await socket.close();
    });
  });
}
