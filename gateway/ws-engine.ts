/**
 * The `ws` engine: node:http plus the `ws` package. Portable (no native code); the reference the
 * `uws` engine is held to by the shared end-to-end suite. This file is the seam (servers, the
 * upgrade decision, listening and closing); ws-http.ts reads HTTP requests, ws-sockets.ts keeps the
 * sockets' handles.
 */
import http from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import { RoutingError, asRoutingError } from "../core/errors.ts";
import type { BinaryStreamRoute, EngineOptions, GatewayEngine, UpgradeDecision, UpgradeRequest } from "./engine.ts";
import { listenServer } from "../platform/ports.ts";
import { createRequestGuard } from "./request-guard.ts";
import { errorOutgoing, missingSubprotocol, normalizeOr500 } from "./responses.ts";
import { httpListener, isWebSocketHandshake, joinHeaders, rejectUpgrade, splitUrl } from "./ws-http.ts";
import { openSocket, openStream } from "./ws-sockets.ts";

/** Close code for remaining sockets when the engine closes. */
const GOING_AWAY = 1001;
/** How long close() lets remaining sockets finish their closing handshake before cutting them. */
const CLOSE_GRACE_MS = 2_000;

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
    httpListener(options, guard),
  );
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head));

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
        openStream(ws, socket, stream.route, request);
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
        openSocket(options, ws, socket, decision.context);
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
