/**
 * The `ws` engine: node:http plus the `ws` package. Portable (no native code); the reference the
 * `uws` engine is held to by the shared end-to-end suite.
 */
import http, { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import { RoutingError, asRoutingError } from "../core/errors.ts";
import type {
  BinaryListener,
  BinarySocket,
  BinaryStreamRoute,
  EngineOptions,
  GatewayEngine,
  HttpRequest,
  SocketHandle,
  SocketListener,
  UpgradeDecision,
  UpgradeRequest,
} from "./engine.ts";
import { listenServer } from "../runtime/ports.ts";
import { createRequestGuard, requestTimedOut } from "./request-guard.ts";
import { serveNodeEventStream } from "./sse/node-stream.ts";
import { closeCode, closeReason, errorOutgoing, missingSubprotocol, normalizeOr500, reportAsync, tooLarge, type Outgoing } from "./responses.ts";

/** Close code for remaining sockets when the engine closes. */
const GOING_AWAY = 1001;
/** How long close() lets remaining sockets finish their closing handshake before cutting them. */
const CLOSE_GRACE_MS = 2_000;
/** Close code for a text frame on a binary stream route. */
const UNSUPPORTED_DATA = 1003;

export function createWsEngine<C>(options: EngineOptions<C>): GatewayEngine {
  if (options.reusePort) throw new Error("ROUTING_HTTP_REUSE_PORT needs ROUTING_GATEWAY_ENGINE=uws: the ws engine (Node 20 http) cannot share a port");
  const maxBody = options.maxBodyBytes;
  /** The subprotocol each accepted upgrade echoes (read back by handleProtocols). */
  const chosenProtocol = new WeakMap<http.IncomingMessage, string>();
  /** Upgrade sockets waiting for the hook's decision. */
  const pending = new Set<Duplex>();

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxBody,
    perMessageDeflate: false,
    clientTracking: true,
    // Echo only the decision's protocol, and only if the client offered it (RFC 6455 4.2.2).
    handleProtocols: (offered, req) => {
      const protocol = chosenProtocol.get(req);
      return protocol !== undefined && offered.has(protocol) ? protocol : false;
    },
  });

  /** One server per binary stream route: each has its own frame limit and subprotocols. */
  const streams = new Map<string, { readonly route: BinaryStreamRoute; readonly wss: WebSocketServer }>();
  for (const route of options.streams ?? []) {
    const streamWss = new WebSocketServer({
      noServer: true,
      maxPayload: route.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: true,
      handleProtocols: (offered) => [...offered].find((p) => route.subprotocols.includes(p)) ?? false,
    });
    streams.set(route.path, { route, wss: streamWss });
  }

  const guard = createRequestGuard(options.hygiene);
  // Node's own header timeout; a body's is ours (below), as Node's requestTimeout counts from the first byte.
  const server = http.createServer(
    { headersTimeout: guard.headerTimeoutMs, requestTimeout: 0, connectionsCheckingInterval: Math.min(1000, guard.headerTimeoutMs || 1000) },
    (req, res) => onRequest(req, res),
  );
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head));

  // ---- HTTP -----------------------------------------------------------------------------------

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? "GET";
    const { path, rawQuery } = splitUrl(req.url ?? "/");
    const headers = joinHeaders(req.headersDistinct);
    const bodyLimit = options.maxBodyBytesFor?.(path) ?? maxBody;
    req.on("error", () => {
      // The client went away mid-body; 'close' on the response covers the rest.
    });
    if (options.eventStream !== undefined && method === "GET" && path === options.eventStream.path) {
      serveNodeEventStream(options.eventStream, req, res, { path, query: new URLSearchParams(rawQuery), headers }, guard);
      return;
    }

    const declared = headers["content-length"];
    if (declared !== undefined && Number(declared) > bodyLimit) {
      options.onRefused?.("body", path);
      writeResponse(res, tooLarge(bodyLimit), true);
      req.resume();
      return;
    }

    let leave: () => void;
    try {
      leave = guard.enter();
    } catch (err) {
      writeResponse(res, errorOutgoing(asRoutingError(err)), true);
      req.resume();
      return;
    }
    res.once("close", leave);
    // A body that does not arrive in time is answered 408 and its connection dropped, not held.
    const bodyTimer =
      guard.bodyTimeoutMs > 0
        ? setTimeout(() => {
            over = true;
            chunks.length = 0;
            leave();
            res.once("finish", () => req.socket.destroy());
            writeResponse(res, errorOutgoing(requestTimedOut(guard.bodyTimeoutMs)), true);
          }, guard.bodyTimeoutMs)
        : undefined;
    bodyTimer?.unref();
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > bodyLimit) {
        over = true;
        clearTimeout(bodyTimer);
        chunks.length = 0;
        options.onRefused?.("body", path);
        writeResponse(res, tooLarge(bodyLimit), true);
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      clearTimeout(bodyTimer);
      leave();
      if (over) return;
      const request: HttpRequest = { method, path, query: new URLSearchParams(rawQuery), headers, body: Buffer.concat(chunks, size) };
      Promise.resolve()
        .then(() => options.http(request))
        .then(normalizeOr500, (err: unknown) => errorOutgoing(asRoutingError(err)))
        .then((out) => writeResponse(res, out, false));
    });
  }

  // ---- WebSocket ------------------------------------------------------------------------------

  function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const { path, rawQuery } = splitUrl(req.url ?? "/");
    const headers = joinHeaders(req.headersDistinct);
    const swallow = (): void => {};
    socket.on("error", swallow);

    const stream = streams.get(path);
    if (path !== options.wsPath && stream === undefined) {
      rejectUpgrade(socket, errorOutgoing(new RoutingError("NOT_FOUND", `no WebSocket endpoint at ${path}`)));
      return;
    }
    if (!isWebSocketHandshake(req.method, headers)) {
      rejectUpgrade(socket, errorOutgoing(new RoutingError("INVALID_REQUEST", "invalid WebSocket handshake")));
      return;
    }
    if (stream !== undefined) {
      // No hook to wait for: upgrade at once (the protocol on top authenticates in-band).
      const offered = (headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
      if (!offered.some((p) => stream.route.subprotocols.includes(p))) {
        rejectUpgrade(socket, errorOutgoing(missingSubprotocol(stream.route)));
        return;
      }
      const request: UpgradeRequest = { path, query: new URLSearchParams(rawQuery), headers };
      stream.wss.handleUpgrade(req, socket, head, (ws) => {
        socket.off("error", swallow);
        onStreamOpen(ws, socket, stream.route, request);
      });
      return;
    }

    // While the hook decides, keep reading: Node leaves an upgraded socket unread, so a client that
    // gives up (FIN) would go unnoticed and hold server.close() forever. A client sends nothing
    // before the 101 (RFC 6455 4.1); anything that does come is kept for ws, within a bound.
    let gone = false;
    const early: Buffer[] = [];
    let earlyBytes = 0;
    const onData = (chunk: Buffer): void => {
      earlyBytes += chunk.length;
      if (earlyBytes > maxBody) socket.destroy();
      else early.push(chunk);
    };
    const onGone = (): void => {
      gone = true;
      pending.delete(socket);
      socket.destroy();
    };
    let leave: () => void;
    try {
      leave = guard.enter();
    } catch (err) {
      rejectUpgrade(socket, errorOutgoing(asRoutingError(err)));
      return;
    }
    socket.on("data", onData);
    socket.once("end", onGone);
    socket.once("close", onGone);
    pending.add(socket);
    const settle = (): boolean => {
      leave();
      socket.off("data", onData);
      socket.off("end", onGone);
      socket.off("close", onGone);
      pending.delete(socket);
      return !gone && !socket.destroyed;
    };
    const finish = (decision: UpgradeDecision<C>): void => {
      if (!settle()) return;
      if (!decision.accept) {
        rejectUpgrade(socket, normalizeOr500(decision.response));
        return;
      }
      if (decision.protocol !== undefined) chosenProtocol.set(req, decision.protocol);
      // Synchronous up to ws attaching its own 'data' listener: no chunk can fall in between.
      wss.handleUpgrade(req, socket, early.length > 0 ? Buffer.concat([head, ...early]) : head, (ws) => {
        socket.off("error", swallow);
        onOpen(ws, socket, decision.context);
      });
    };
    const fail = (err: unknown): void => {
      if (!settle()) return;
      rejectUpgrade(socket, errorOutgoing(asRoutingError(err)));
    };
    Promise.resolve()
      .then(() => options.sockets.upgrade({ path, query: new URLSearchParams(rawQuery), headers }))
      .then(finish, fail);
  }

  function onOpen(ws: WebSocket, socket: Duplex, context: C): void {
    let listener: SocketListener | undefined;
    let notified = false;
    const handle: SocketHandle = {
      send(text) {
        if (ws.readyState !== WebSocket.OPEN) return false;
        ws.send(text);
        return true;
      },
      bufferedAmount() {
        return ws.bufferedAmount;
      },
      ping() {
        if (ws.readyState === WebSocket.OPEN) ws.ping();
      },
      close(code, reason) {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.close(closeCode(code), closeReason(reason));
      },
    };
    ws.on("message", (data: RawData, isBinary: boolean) => listener?.message(isBinary ? null : rawText(data)));
    ws.on("pong", () => listener?.pong());
    // ws writes frames straight to the socket (no compression), so the socket's drain is ours.
    socket.on("drain", () => {
      if (ws.readyState === WebSocket.OPEN) listener?.drain();
    });
    ws.on("error", (err: Error & { code?: string }) => {
      // Protocol errors (too big, invalid UTF-8): ws closes the socket and emits 'close' next.
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") options.onRefused?.("frame", options.wsPath);
    });
    ws.on("close", (code: number) => {
      if (notified || !listener) return;
      notified = true;
      listener.closed(code);
    });
    try {
      listener = options.sockets.open(handle, context);
    } catch (err) {
      handle.close(1011, "internal error");
      reportAsync(err);
    }
  }

  function onStreamOpen(ws: WebSocket, socket: Duplex, route: BinaryStreamRoute, request: UpgradeRequest): void {
    let listener: BinaryListener | undefined;
    let notified = false;
    const handle: BinarySocket = {
      send(data) {
        if (ws.readyState !== WebSocket.OPEN) return false;
        ws.send(data, { binary: true });
        return true;
      },
      bufferedAmount() {
        return ws.bufferedAmount;
      },
      close(code, reason) {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.close(closeCode(code), closeReason(reason));
      },
    };
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (!isBinary) handle.close(UNSUPPORTED_DATA, "binary frames only");
      else listener?.message(rawBytes(data));
    });
    socket.on("drain", () => {
      if (ws.readyState === WebSocket.OPEN) listener?.drain();
    });
    ws.on("error", () => {
      // Protocol errors (too big): ws closes the socket and emits 'close' next.
    });
    ws.on("close", (code: number) => {
      if (notified || !listener) return;
      notified = true;
      // ws may emit 'close' synchronously inside handle.close(): never re-enter the listener there.
      queueMicrotask(() => listener?.closed(code));
    });
    try {
      listener = route.open(handle, request);
    } catch (err) {
      handle.close(1011, "internal error");
      reportAsync(err);
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  let closing: Promise<void> | undefined;

  return {
    name: "ws",
    listen(host, port) {
      if (closing) return Promise.reject(new Error("the ws engine is closed"));
      return listenServer(server, host, port);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        const servers = [wss, ...[...streams.values()].map((s) => s.wss)];
        const grace = setTimeout(() => {
          for (const server of servers) for (const ws of server.clients) ws.terminate();
        }, CLOSE_GRACE_MS);
        grace.unref();
        // Sessions close their sockets first; whatever is left goes away now.
        for (const server of servers) {
          for (const ws of server.clients) {
            if (ws.readyState === WebSocket.OPEN) ws.close(GOING_AWAY, "server closing");
          }
          server.close();
        }
        for (const socket of pending) socket.destroy();
        pending.clear();
        if (!server.listening) {
          clearTimeout(grace);
          resolve();
          return;
        }
        server.close(() => {
          clearTimeout(grace);
          resolve();
        });
        // Idle keep-alive and in-flight HTTP connections; upgraded sockets close above.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

// ---- helpers (kept local: the uws engine has its own copies, engines share only engine.ts) ----

function splitUrl(url: string): { path: string; rawQuery: string } {
  const q = url.indexOf("?");
  return q === -1 ? { path: url, rawQuery: "" } : { path: url.slice(0, q), rawQuery: url.slice(q + 1) };
}

/** Lower-cased names; repeated headers joined with ", " (as the uws engine does). */
function joinHeaders(distinct: NodeJS.Dict<string[]>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(distinct)) {
    if (values !== undefined) headers[name] = values.join(", ");
  }
  return headers;
}

/** The checks uWS makes before it calls its upgrade handler. */
function isWebSocketHandshake(method: string | undefined, headers: Readonly<Record<string, string>>): boolean {
  return (
    method === "GET" &&
    headers["upgrade"]?.toLowerCase() === "websocket" &&
    /^[+/0-9A-Za-z]{22}==$/.test(headers["sec-websocket-key"] ?? "")
  );
}

function rawBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data).toString("utf8");
}

function writeResponse(res: http.ServerResponse, out: Outgoing, closeConnection: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of out.headers) headers[name] = value;
  if (out.status !== 204 && out.status !== 304) headers["content-length"] = out.body.length;
  if (closeConnection) headers["connection"] = "close";
  res.writeHead(out.status, STATUS_CODES[out.status] ?? "Unknown", headers);
  res.end(out.body);
}

/** Answers an upgrade with a plain HTTP response (never 101) and closes the socket. */
function rejectUpgrade(socket: Duplex, out: Outgoing): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? "Unknown"}`];
  for (const [name, value] of out.headers) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${out.body.length}`, "Connection: close", "", "");
  socket.once("finish", () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n"), "latin1"), out.body]));
}

