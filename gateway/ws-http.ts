/** The `ws` engine's HTTP side: node:http requests read into one `HttpRequest` (bounded body, body timeout), and the handshake helpers. */
import type http from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { asRoutingError } from "../core/errors.ts";
import type { EngineOptions, HttpRequest } from "./engine.ts";
import { requestTimedOut, type RequestGuard } from "./request-guard.ts";
import { serveNodeEventStream } from "./sse/node-stream.ts";
import { errorOutgoing, normalizeOr500, tooLarge, type Outgoing } from "./responses.ts";

/** The request listener of the engine's node:http server. */
export function httpListener<C>(options: EngineOptions<C>, guard: RequestGuard): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const maxBody = options.maxBodyBytes;

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
      void Promise.resolve()
        .then(() => options.http(request))
        .then(normalizeOr500, (err: unknown) => errorOutgoing(asRoutingError(err)))
        .then((out) => writeResponse(res, out, false));
    });
  }
  return onRequest;
}

export function splitUrl(url: string): { path: string; rawQuery: string } {
  const q = url.indexOf("?");
  return q === -1 ? { path: url, rawQuery: "" } : { path: url.slice(0, q), rawQuery: url.slice(q + 1) };
}

/** Lower-cased names; repeated headers joined with ", " (as the uws engine does). */
export function joinHeaders(distinct: NodeJS.Dict<string[]>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(distinct)) {
    if (values !== undefined) headers[name] = values.join(", ");
  }
  return headers;
}

/** The checks uWS makes before it calls its upgrade handler. */
export function isWebSocketHandshake(method: string | undefined, headers: Readonly<Record<string, string>>): boolean {
  return method === "GET" && headers["upgrade"]?.toLowerCase() === "websocket" && /^[+/0-9A-Za-z]{22}==$/.test(headers["sec-websocket-key"] ?? "");
}

export function writeResponse(res: http.ServerResponse, out: Outgoing, closeConnection: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of out.headers) headers[name] = value;
  if (out.status !== 204 && out.status !== 304) headers["content-length"] = out.body.length;
  if (closeConnection) headers["connection"] = "close";
  res.writeHead(out.status, STATUS_CODES[out.status] ?? "Unknown", headers);
  res.end(out.body);
}

/** Answers an upgrade with a plain HTTP response (never 101) and closes the socket. */
export function rejectUpgrade(socket: Duplex, out: Outgoing): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? "Unknown"}`];
  for (const [name, value] of out.headers) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${out.body.length}`, "Connection: close", "", "");
  socket.once("finish", () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n"), "latin1"), out.body]));
}
