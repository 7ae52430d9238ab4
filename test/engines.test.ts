/**
 * One end-to-end suite, run against both gateway engines (uws, ws) on ephemeral ports with real
 * clients: global fetch for HTTP, the `ws` package for WebSocket, raw TCP where a client would
 * hide the wire.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createEngine } from "../gateway/create-engine.ts";
import type {
  BinarySocket,
  GatewayEngine,
  HttpRequest,
  HttpResponse,
  SocketHandle,
  SocketListener,
  UpgradeDecision,
  UpgradeRequest,
} from "../gateway/engine.ts";
import { loadUwsNative, uwsNativePath } from "../gateway/uws-engine.ts";

const HOST = "127.0.0.1";
const WS_PATH = "/connect";
const MAX = 64 * 1024;
/** The binary stream route (MQTT over WebSocket in the service). */
const STREAM_PATH = "/mqtt";

interface Ctx {
  readonly id: number;
}

interface ServerSocket {
  readonly handle: SocketHandle;
  readonly context: Ctx;
  readonly messages: Array<string | null>;
  pongs: number;
  drains: number;
  readonly closed: number[];
}

interface ServerStream {
  readonly handle: BinarySocket;
  readonly request: UpgradeRequest;
  readonly messages: Buffer[];
  drains: number;
  readonly closed: number[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

/** Engine plus recorded hook calls; the hooks' behaviour is swapped per test. */
function harness(kind: "uws" | "ws") {
  const requests: HttpRequest[] = [];
  const upgrades: UpgradeRequest[] = [];
  const sockets: ServerSocket[] = [];
  const streams: ServerStream[] = [];
  let nextId = 1;
  const h = {
    requests,
    upgrades,
    sockets,
    streams,
    http: async (_request: HttpRequest): Promise<HttpResponse> => ({ status: 200, body: "ok" }),
    upgrade: async (_request: UpgradeRequest): Promise<UpgradeDecision<Ctx>> => ({ accept: true, context: { id: nextId++ } }),
    /** Runs at the start of every sockets.open(). */
    onOpen: (): void => {},
    engine: undefined as unknown as GatewayEngine,
    port: 0,
  };
  h.engine = createEngine<Ctx>(kind, {
    wsPath: WS_PATH,
    maxBodyBytes: MAX,
    http: (request) => {
      requests.push(request);
      return h.http(request);
    },
    sockets: {
      upgrade: (request) => {
        upgrades.push(request);
        return h.upgrade(request);
      },
      open: (handle, context): SocketListener => {
        h.onOpen();
        const s: ServerSocket = { handle, context, messages: [], pongs: 0, drains: 0, closed: [] };
        sockets.push(s);
        return {
          message: (text) => s.messages.push(text),
          pong: () => s.pongs++,
          drain: () => s.drains++,
          closed: (code) => s.closed.push(code),
        };
      },
    },
    streams: [
      {
        path: STREAM_PATH,
        subprotocols: ["mqtt", "mqttv3.1"],
        maxFrameBytes: MAX,
        open: (handle, request) => {
          const s: ServerStream = { handle, request, messages: [], drains: 0, closed: [] };
          streams.push(s);
          return {
            message: (data) => s.messages.push(data),
            drain: () => s.drains++,
            closed: (code) => s.closed.push(code),
          };
        },
      },
    ],
  });
  return h;
}

type Harness = ReturnType<typeof harness>;

function listenNet(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    socket.once("connect", () => {
      socket.destroy();
      resolve();
    });
    socket.once("error", reject);
  });
}

/** Sends raw bytes and returns everything the server writes until it closes (or 2 s pass). */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST, () => socket.write(request));
    let data = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(data);
    }, 2_000);
    socket.on("data", (chunk) => (data += chunk.toString("latin1")));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.on("error", reject);
  });
}

for (const kind of ["uws", "ws"] as const) {
  describe(`gateway engine: ${kind}`, () => {
    let h: Harness;
    let clients: WebSocket[];
    let base: string;
    let wsBase: string;

    beforeEach(async () => {
      h = harness(kind);
      clients = [];
      h.port = await h.engine.listen(HOST, 0);
      base = `http://${HOST}:${h.port}`;
      wsBase = `ws://${HOST}:${h.port}`;
    });

    afterEach(async () => {
      for (const c of clients) c.terminate();
      await h.engine.close();
    });

    function track(c: WebSocket): WebSocket {
      clients.push(c);
      c.on("error", () => {});
      return c;
    }

    /** Opens a client and waits for the server side to see it. */
    async function connect(path = `${WS_PATH}?token=t1`, protocols?: string[]): Promise<{ client: WebSocket; server: ServerSocket }> {
      const before = h.sockets.length;
      const client = track(new WebSocket(`${wsBase}${path}`, protocols));
      await new Promise<void>((resolve, reject) => {
        client.once("open", () => resolve());
        client.once("error", reject);
        client.once("unexpected-response", (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
      });
      await until(() => h.sockets.length > before, "server open()");
      return { client, server: h.sockets[h.sockets.length - 1]! };
    }

    /** An upgrade the server must refuse: resolves with the HTTP answer, rejects if a socket opens. */
    function refused(path: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
      return new Promise((resolve, reject) => {
        const client = track(new WebSocket(`${wsBase}${path}`));
        client.once("open", () => reject(new Error("the socket opened")));
        client.once("unexpected-response", (req, res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (body += d));
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
            req.destroy();
          });
        });
        client.once("error", (err) => reject(err));
      });
    }

    function closeOf(client: WebSocket): Promise<{ code: number; reason: string }> {
      return new Promise((resolve) => client.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    }

    // ---- HTTP ---------------------------------------------------------------------------------

    describe("http", () => {
      it("passes method, path, query, headers and body to the handler and writes its response", async () => {
        h.http = async () => ({
          status: 202,
          headers: { "content-type": "application/json", "x-request-id": "req-1" },
          body: JSON.stringify({ accepted: true }),
        });
        const res = await fetch(`${base}/messages/inbox?limit=5&tag=a&tag=b%20c`, {
          method: "POST",
          headers: { "content-type": "application/json", "X-Trace": "abc", authorization: "Bearer t0k" },
          body: '{"hello":"wörld"}',
        });
        expect(res.status).toBe(202);
        expect(res.statusText).toBe("Accepted");
        expect(res.headers.get("content-type")).toBe("application/json");
        expect(res.headers.get("x-request-id")).toBe("req-1");
        expect(await res.json()).toEqual({ accepted: true });

        expect(h.requests).toHaveLength(1);
        const req = h.requests[0]!;
        expect(req.method).toBe("POST");
        expect(req.path).toBe("/messages/inbox");
        expect(req.query.get("limit")).toBe("5");
        expect(req.query.getAll("tag")).toEqual(["a", "b c"]);
        expect(req.headers["x-trace"]).toBe("abc");
        expect(req.headers["authorization"]).toBe("Bearer t0k");
        expect(req.headers["content-type"]).toBe("application/json");
        expect(Object.keys(req.headers).every((k) => k === k.toLowerCase())).toBe(true);
        expect(Buffer.isBuffer(req.body)).toBe(true);
        expect(req.body.toString("utf8")).toBe('{"hello":"wörld"}');
      });

      it("handles a body-less GET (also on the WebSocket path), Buffer bodies and keep-alive", async () => {
        h.http = async (r) => ({ status: 404, headers: { "content-type": "text/plain" }, body: Buffer.from(`no ${r.path}`) });
        for (const path of ["/", WS_PATH, "/x/y"]) {
          const res = await fetch(`${base}${path}`);
          expect(res.status).toBe(404);
          expect(res.statusText).toBe("Not Found");
          expect(await res.text()).toBe(`no ${path}`);
        }
        expect(h.requests.map((r) => [r.method, r.path, r.body.length, r.query.toString()])).toEqual([
          ["GET", "/", 0, ""],
          ["GET", WS_PATH, 0, ""],
          ["GET", "/x/y", 0, ""],
        ]);
      });

      it("writes 204 without a body and answers HEAD without one", async () => {
        h.http = async (r) => (r.method === "HEAD" ? { status: 200, body: "twelve bytes" } : { status: 204 });
        const res = await fetch(`${base}/gone`, { method: "DELETE" });
        expect(res.status).toBe(204);
        expect(res.headers.get("content-length")).toBeNull();
        expect(await res.text()).toBe("");
        const head = await fetch(`${base}/health`, { method: "HEAD" });
        expect(head.status).toBe(200);
        expect(head.headers.get("content-length")).toBe("12");
        expect(await head.text()).toBe("");
        // The connection is still usable after both.
        h.http = async () => ({ status: 200, body: "after" });
        expect(await (await fetch(`${base}/again`)).text()).toBe("after");
      });

      it("accepts a body of exactly maxBodyBytes", async () => {
        const res = await fetch(`${base}/messages`, { method: "POST", body: Buffer.alloc(MAX, 0x61) });
        expect(res.status).toBe(200);
        expect(h.requests[0]!.body.length).toBe(MAX);
        expect(h.requests[0]!.body.every((b) => b === 0x61)).toBe(true);
      });

      it("answers 413 with the JSON error shape past maxBodyBytes (Content-Length) and never calls the handler", async () => {
        const res = await fetch(`${base}/messages`, { method: "POST", body: Buffer.alloc(MAX + 1, 0x61) });
        expect(res.status).toBe(413);
        expect(res.headers.get("content-type")).toBe("application/json");
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("ENVELOPE_TOO_LARGE");
        expect(typeof body.error.message).toBe("string");
        expect(h.requests).toHaveLength(0);
      });

      it("answers 413 past maxBodyBytes on a chunked (streamed) body", async () => {
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new Uint8Array(MAX / 2));
            controller.enqueue(new Uint8Array(MAX / 2));
            controller.enqueue(new Uint8Array(1024));
            controller.close();
          },
        });
        const res = await fetch(`${base}/messages`, { method: "POST", body: stream, duplex: "half" } as RequestInit);
        expect(res.status).toBe(413);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("ENVELOPE_TOO_LARGE");
        expect(h.requests).toHaveLength(0);
      });

      it("turns a throwing handler or an invalid response into 500 INTERNAL", async () => {
        h.http = async () => {
          throw new Error("secret detail");
        };
        const res = await fetch(`${base}/boom`);
        expect(res.status).toBe(500);
        expect(await res.json()).toEqual({ error: { code: "INTERNAL", message: "internal error" } });

        h.http = async () => ({ status: 200, headers: { "x-bad": "a\r\nx-injected: 1" }, body: "no" });
        const bad = await fetch(`${base}/bad`);
        expect(bad.status).toBe(500);
        expect(bad.headers.get("x-injected")).toBeNull();
      });
    });

    // ---- WebSocket upgrade --------------------------------------------------------------------

    describe("upgrade", () => {
      it("accepts: the hook sees path, query and headers, open() gets the decision's context", async () => {
        const client = track(new WebSocket(`${wsBase}${WS_PATH}?token=abc&v=1`, { headers: { "X-Client": "test-suite" } }));
        await new Promise<void>((resolve, reject) => {
          client.once("open", () => resolve());
          client.once("error", reject);
        });
        await until(() => h.sockets.length === 1, "open()");
        expect(h.upgrades).toHaveLength(1);
        const up = h.upgrades[0]!;
        expect(up.path).toBe(WS_PATH);
        expect(up.query.get("token")).toBe("abc");
        expect(up.query.get("v")).toBe("1");
        expect(up.headers["x-client"]).toBe("test-suite");
        expect(up.headers["upgrade"]?.toLowerCase()).toBe("websocket");
        expect(h.sockets[0]!.context).toEqual({ id: 1 });
        expect(client.protocol).toBe("");
      });

      it("refuses: the client gets the decision's status and body and never an open socket", async () => {
        h.upgrade = async () => ({
          accept: false,
          response: {
            status: 401,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ error: { code: "TOKEN_INVALID", message: "bad token" } }),
          },
        });
        const res = await refused(`${WS_PATH}?token=bad`);
        expect(res.status).toBe(401);
        expect(res.headers["content-type"]).toBe("application/json");
        expect(JSON.parse(res.body)).toEqual({ error: { code: "TOKEN_INVALID", message: "bad token" } });
        await sleep(50);
        expect(h.upgrades).toHaveLength(1);
        expect(h.sockets).toHaveLength(0);
      });

      it("answers 500 (no 101) when the upgrade hook throws", async () => {
        h.upgrade = async () => {
          throw new Error("boom");
        };
        const res = await refused(WS_PATH);
        expect(res.status).toBe(500);
        expect(JSON.parse(res.body)).toEqual({ error: { code: "INTERNAL", message: "internal error" } });
        expect(h.sockets).toHaveLength(0);
      });

      it("echoes the decision's subprotocol, only that one", async () => {
        h.upgrade = async () => ({ accept: true, protocol: "routing.v1", context: { id: 7 } });
        const { client, server } = await connect(WS_PATH, ["bearer.xyz", "routing.v1"]);
        expect(client.protocol).toBe("routing.v1");
        expect(h.upgrades[0]!.headers["sec-websocket-protocol"]).toBe("bearer.xyz,routing.v1");
        expect(server.context).toEqual({ id: 7 });
      });

      it("answers 404 to an upgrade on another path without calling the hook", async () => {
        const res = await refused("/elsewhere?token=t");
        expect(res.status).toBe(404);
        expect(JSON.parse(res.body).error.code).toBe("NOT_FOUND");
        expect(h.upgrades).toHaveLength(0);
        expect(h.requests).toHaveLength(0);
      });

      it("answers 400 to a broken handshake on the WebSocket path without calling the hook", async () => {
        const wire = await rawExchange(
          h.port,
          `GET ${WS_PATH} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
        expect(wire).toMatch(/^HTTP\/1\.1 400 /);
        expect(wire).toContain('"code":"INVALID_REQUEST"');
        expect(h.upgrades).toHaveLength(0);
        expect(h.requests).toHaveLength(0);
      });

      it("keeps sockets whose accept arrives on a later task while open() allocates", async () => {
        // Regression (uws): the cork around an async res.upgrade() read freed heap after its callback
        // and, when open() had malloc'd bytes with CONNECTION_CLOSE set there, shut the new socket
        // down right after the 101 (1006 on both sides). Buffers of 0x10 bytes in open() stand in
        // for the service's session set-up and make that nearly every time.
        h.upgrade = async () => {
          await sleep(1);
          return { accept: true, context: { id: 1 } };
        };
        const garbage: Buffer[] = [];
        h.onOpen = () => {
          for (let n = 16; n <= 512; n += 8) garbage.push(Buffer.allocUnsafeSlow(n).fill(0x10));
        };
        const dropped: number[] = [];
        for (let k = 0; k < 25; k++) {
          const { client, server } = await connect();
          await sleep(15);
          if (client.readyState !== WebSocket.OPEN || server.closed.length > 0) dropped.push(k);
          client.terminate();
        }
        expect(dropped).toEqual([]);
        // Same-drain accepts (inside uWS's parser) take the other path; they stay up as well.
        h.upgrade = async () => ({ accept: true, context: { id: 2 } });
        const { client, server } = await connect();
        await sleep(15);
        expect(client.readyState).toBe(WebSocket.OPEN);
        expect(server.closed).toEqual([]);
      });

      it("drops an accept that arrives after the client gave up", async () => {
        let release!: (d: UpgradeDecision<Ctx>) => void;
        h.upgrade = () => new Promise((resolve) => (release = resolve));
        const client = track(new WebSocket(`${wsBase}${WS_PATH}`));
        await until(() => h.upgrades.length === 1, "upgrade hook called");
        client.terminate();
        await sleep(100);
        release({ accept: true, context: { id: 99 } });
        await sleep(100);
        expect(h.sockets).toHaveLength(0);
        // The engine still serves.
        h.upgrade = async () => ({ accept: true, context: { id: 1 } });
        const { server } = await connect();
        expect(server.context.id).toBeGreaterThan(0);
      });
    });

    // ---- WebSocket frames and lifecycle -------------------------------------------------------

    describe("socket", () => {
      it("carries text frames both ways", async () => {
        const { client, server } = await connect();
        const received: Array<{ text: string; binary: boolean }> = [];
        client.on("message", (data, isBinary) => received.push({ text: data.toString(), binary: isBinary }));
        client.send("hello ✓ from client");
        await until(() => server.messages.length === 1, "server message");
        expect(server.messages).toEqual(["hello ✓ from client"]);
        expect(server.handle.send("hello ✓ from server")).toBe(true);
        expect(server.handle.send('{"type":"second"}')).toBe(true);
        await until(() => received.length === 2, "client messages");
        expect(received).toEqual([
          { text: "hello ✓ from server", binary: false },
          { text: '{"type":"second"}', binary: false },
        ]);
      });

      it("reports a binary frame as message(null)", async () => {
        const { client, server } = await connect();
        client.send(Buffer.from([1, 2, 3]), { binary: true });
        client.send("text after");
        await until(() => server.messages.length === 2, "server messages");
        expect(server.messages).toEqual([null, "text after"]);
      });

      it("accepts a frame of exactly maxBodyBytes and closes the socket on a bigger one", async () => {
        const { client, server } = await connect();
        client.send("x".repeat(MAX));
        await until(() => server.messages.length === 1, "max-size frame");
        expect(server.messages[0]!.length).toBe(MAX);
        const closed = closeOf(client);
        client.send("x".repeat(MAX + 1));
        const { code } = await closed;
        await until(() => server.closed.length === 1, "closed()");
        // Both engines close with 1009 (Message Too Big). ws stops reading, so it never gets the closing
        // handshake back: closed(1006); uws closes cleanly itself (issue 19: it used to drop with 1006).
        expect(code).toBe(1009);
        expect(server.closed).toEqual([kind === "ws" ? 1006 : 1009]);
        expect(server.messages).toHaveLength(1);
      });

      it("pings; the client's automatic pong reaches listener.pong", async () => {
        const { server } = await connect();
        server.handle.ping();
        await until(() => server.pongs === 1, "pong");
        server.handle.ping();
        await until(() => server.pongs === 2, "second pong");
      });

      it("closes from the server with a custom code the client sees; the handle is then inert", async () => {
        const { client, server } = await connect();
        const closed = closeOf(client);
        server.handle.close(4008, "send buffer limit exceeded");
        expect(await closed).toEqual({ code: 4008, reason: "send buffer limit exceeded" });
        await until(() => server.closed.length === 1, "closed()");
        expect(server.closed).toEqual([4008]);
        expect(server.handle.send("late")).toBe(false);
        expect(() => server.handle.close(1000, "again")).not.toThrow();
        expect(() => server.handle.ping()).not.toThrow();
        expect(server.handle.bufferedAmount()).toBe(0);
        await sleep(50);
        expect(server.closed).toEqual([4008]);
      });

      it("never calls closed() from inside handle.close()", async () => {
        const { server } = await connect();
        server.handle.close(1000, "bye");
        expect(server.closed).toEqual([]);
        await until(() => server.closed.length === 1, "closed()");
        expect(server.closed).toEqual([1000]);
      });

      it("calls closed() exactly once when the client closes", async () => {
        const { client, server } = await connect();
        client.close(4100, "client leaving");
        await until(() => server.closed.length === 1, "closed()");
        await sleep(100);
        expect(server.closed).toEqual([4100]);
        expect(server.handle.send("late")).toBe(false);
      });

      it("calls closed() exactly once when the client drops the connection", async () => {
        const { client, server } = await connect();
        client.terminate();
        await until(() => server.closed.length === 1, "closed()");
        await sleep(100);
        expect(server.closed).toEqual([1006]);
      });

      it("grows bufferedAmount while the client does not read, then drains", async () => {
        const { client, server } = await connect();
        let received = 0;
        client.on("message", () => received++);
        const clientSocket = (client as unknown as { _socket: net.Socket })._socket;
        clientSocket.pause();
        const frame = "y".repeat(64 * 1024);
        const frames = 320; // 20 MiB
        let peak = 0;
        let allQueued = true;
        for (let i = 0; i < frames; i++) {
          allQueued = server.handle.send(frame) && allQueued;
          peak = Math.max(peak, server.handle.bufferedAmount());
        }
        expect(allQueued).toBe(true);
        expect(peak).toBeGreaterThan(0);
        // Still high after a while: nothing reads.
        await sleep(100);
        expect(server.handle.bufferedAmount()).toBeGreaterThan(0);
        clientSocket.resume();
        await until(() => received === frames, "all frames delivered", 20_000);
        await until(() => server.handle.bufferedAmount() === 0, "buffer empty");
        expect(server.drains).toBeGreaterThan(0);
      });
    });

    // ---- binary stream route (MQTT over WebSocket) --------------------------------------------

    describe("binary stream route", () => {
      async function openStream(protocols: string[] = ["mqtt"], path = `${STREAM_PATH}?x=1`): Promise<{ client: WebSocket; server: ServerStream }> {
        const before = h.streams.length;
        const client = track(new WebSocket(`${wsBase}${path}`, protocols));
        await new Promise<void>((resolve, reject) => {
          client.once("open", () => resolve());
          client.once("error", reject);
          client.once("unexpected-response", (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
        });
        await until(() => h.streams.length > before, "stream open()");
        return { client, server: h.streams[h.streams.length - 1]! };
      }

      it("echoes the subprotocol, passes the request, carries bytes both ways without the socket hooks", async () => {
        const { client, server } = await openStream(["other", "mqtt"]);
        expect(client.protocol).toBe("mqtt");
        expect(server.request.path).toBe(STREAM_PATH);
        expect(server.request.query.get("x")).toBe("1");
        expect(server.request.headers["sec-websocket-protocol"]).toBe("other,mqtt");
        expect(h.upgrades).toHaveLength(0);
        expect(h.sockets).toHaveLength(0);
        const received: Array<{ data: Buffer; binary: boolean }> = [];
        client.on("message", (data, isBinary) => received.push({ data: data as Buffer, binary: isBinary }));
        client.send(Buffer.from([0x10, 0x00, 0xff]));
        client.send(Buffer.from([0x01]));
        await until(() => server.messages.length === 2, "server bytes");
        expect(server.messages.map((b) => [...b])).toEqual([[0x10, 0x00, 0xff], [0x01]]);
        expect(server.handle.send(Buffer.from([0x20, 0x02, 0x00, 0x00]))).toBe(true);
        await until(() => received.length === 1, "client bytes");
        expect(received[0]!.binary).toBe(true);
        expect([...received[0]!.data]).toEqual([0x20, 0x02, 0x00, 0x00]);
      });

      it("echoes mqttv3.1 for old clients", async () => {
        const { client } = await openStream(["mqttv3.1"]);
        expect(client.protocol).toBe("mqttv3.1");
      });

      it("answers 400 (no 101) when the client offers none of the route's subprotocols", async () => {
        for (const protocols of [[], ["graphql-ws"]]) {
          const status = await new Promise<number>((resolve, reject) => {
            const client = track(new WebSocket(`${wsBase}${STREAM_PATH}`, protocols));
            client.once("open", () => reject(new Error("the socket opened")));
            client.once("unexpected-response", (req, res) => {
              resolve(res.statusCode ?? 0);
              req.destroy();
            });
            client.once("error", reject);
          });
          expect(status).toBe(400);
        }
        expect(h.streams).toHaveLength(0);
      });

      it("closes a socket that sends a text frame with 1003", async () => {
        const { client, server } = await openStream();
        const closed = closeOf(client);
        client.send("not bytes");
        expect((await closed).code).toBe(1003);
        await until(() => server.closed.length === 1, "closed()");
        expect(server.messages).toHaveLength(0);
      });

      it("calls closed() exactly once when the client goes, and the handle is then inert", async () => {
        const { client, server } = await openStream();
        client.close(1000);
        await until(() => server.closed.length === 1, "closed()");
        await sleep(50);
        expect(server.closed).toEqual([1000]);
        expect(server.handle.send(Buffer.from([1]))).toBe(false);
        expect(server.handle.bufferedAmount()).toBe(0);
        expect(() => server.handle.close(1000, "again")).not.toThrow();
      });

      it("never calls closed() from inside handle.close(); the client sees the code", async () => {
        const { client, server } = await openStream();
        const closed = closeOf(client);
        server.handle.close(1001, "bye");
        expect(server.closed).toEqual([]);
        expect((await closed).code).toBe(1001);
        await until(() => server.closed.length === 1, "closed()");
      });

      it("grows bufferedAmount while the client does not read, then drains", async () => {
        const { client, server } = await openStream();
        let received = 0;
        client.on("message", () => received++);
        const clientSocket = (client as unknown as { _socket: net.Socket })._socket;
        clientSocket.pause();
        const chunk = Buffer.alloc(64 * 1024, 7);
        for (let i = 0; i < 320; i++) expect(server.handle.send(chunk)).toBe(true);
        await sleep(100);
        expect(server.handle.bufferedAmount()).toBeGreaterThan(0);
        clientSocket.resume();
        await until(() => received === 320, "all frames delivered", 20_000);
        await until(() => server.handle.bufferedAmount() === 0, "buffer empty");
        expect(server.drains).toBeGreaterThan(0);
      });

      it("close() closes stream sockets with 1001", async () => {
        const { client, server } = await openStream();
        const closed = closeOf(client);
        await h.engine.close();
        expect((await closed).code).toBe(1001);
        await until(() => server.closed.length === 1, "closed()");
      });
    });

    // ---- lifecycle ----------------------------------------------------------------------------

    describe("lifecycle", () => {
      it("rejects with EADDRINUSE when the port is taken (by another process' socket or another engine)", async () => {
        const blocker = net.createServer();
        const taken = await listenNet(blocker);
        const other = harness(kind);
        try {
          await expect(other.engine.listen(HOST, taken)).rejects.toMatchObject({ code: "EADDRINUSE" });
          await expect(other.engine.listen(HOST, h.port)).rejects.toMatchObject({ code: "EADDRINUSE" });
        } finally {
          await other.engine.close();
          await new Promise<void>((resolve) => blocker.close(() => resolve()));
        }
      });

      it("close() does not wait for an upgrade still being decided", async () => {
        h.upgrade = () => new Promise<never>(() => {});
        const client = track(new WebSocket(`${wsBase}${WS_PATH}`));
        const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
        await until(() => h.upgrades.length === 1, "upgrade hook called");
        await h.engine.close();
        await gone;
        expect(h.sockets).toHaveLength(0);
      });

      it("close() stops accepting connections and closes remaining sockets with 1001", async () => {
        const { client, server } = await connect();
        expect((await fetch(`${base}/ping`)).status).toBe(200);
        const closed = closeOf(client);
        await h.engine.close();
        expect((await closed).code).toBe(1001);
        await until(() => server.closed.length === 1, "closed()");
        expect(server.closed).toEqual([1001]);
        await expect(tcpConnect(h.port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
        await expect(fetch(`${base}/ping`)).rejects.toThrow();
      });
    });
  });
}

describe("uws native binary", () => {
  it("is loaded from binaries/, never the package's JS fallback", () => {
    const path = uwsNativePath();
    expect(path).toMatch(new RegExp(`binaries[\\\\/]uws_${process.platform}_${process.arch}_${process.versions.modules}\\.node$`));
    expect(existsSync(path)).toBe(true);
    const mod = loadUwsNative();
    const require = createRequire(import.meta.url);
    expect(require.cache[path]?.exports).toBe(mod);
    expect(Function.prototype.toString.call(mod.App)).toContain("[native code]");
    expect(Object.keys(require.cache).some((file) => /uWebSockets\.js[\\/](dist|src)[\\/]/.test(file))).toBe(false);
  });

  it("fails loudly, naming the file, the ABI and the portable engine", () => {
    expect(() => loadUwsNative("/nonexistent/uws_none.node")).toThrow(/\/nonexistent\/uws_none\.node[\s\S]*Node ABI \d+[\s\S]*ROUTING_GATEWAY_ENGINE=ws/);
  });

  it("createEngine rejects an unknown kind", () => {
    const options = {
      wsPath: WS_PATH,
      maxBodyBytes: MAX,
      http: async () => ({ status: 200 }),
      sockets: { upgrade: async () => ({ accept: false as const, response: { status: 401 } }), open: () => ({}) as SocketListener },
    };
    expect(() => createEngine("h2" as "ws", options)).toThrow("unknown gateway engine: h2");
  });
});
