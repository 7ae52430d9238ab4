/**
 * The uWS engine's HTTP side: every request that is not a WebSocket upgrade, read into one
 * `HttpRequest` (bounded body, body timeout) and answered from `options.http`. uWS rules: an
 * HttpRequest is stack-allocated (everything is copied before the first await); an HttpResponse
 * gets `onAborted`, is never written after it aborted, and is written inside `res.cork()` after an
 * await; ArrayBuffers handed to callbacks are neutered on return (copied at once).
 */
import { STATUS_CODES } from "node:http";
import type * as Uws from "uWebSockets.js";
import { RoutingError, asRoutingError } from "../core/errors.ts";
import type { EngineOptions, HttpRequest } from "./engine.ts";
import { requestTimedOut, type RequestGuard } from "./request-guard.ts";
import { mountUwsEventStream } from "./sse/uws-stream.ts";
import { errorOutgoing, normalizeOr500, tooLarge, type Outgoing } from "./responses.ts";

export function serveHttp<C>(app: Uws.TemplatedApp, options: EngineOptions<C>, guard: RequestGuard): void {
  const maxBody = options.maxBodyBytes;
  if (options.eventStream !== undefined) mountUwsEventStream(app, options.eventStream, guard);

  app.any("/*", (res, req) => {
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const rawQuery = req.getQuery() ?? "";
    const headers = copyHeaders(req);
    const bodyLimit = options.maxBodyBytesFor?.(path) ?? maxBody;

    // An upgrade that did not reach the WebSocket route: another path, or a handshake uWS rejected.
    if (isUpgradeAttempt(headers)) {
      const err =
        path === options.wsPath || options.streams?.some((route) => route.path === path)
          ? new RoutingError("INVALID_REQUEST", "invalid WebSocket handshake")
          : new RoutingError("NOT_FOUND", `no WebSocket endpoint at ${path}`);
      writeResponse(res, method, errorOutgoing(err), true);
      return;
    }

    const declared = headers["content-length"];
    if (declared !== undefined && Number(declared) > bodyLimit) {
      options.onRefused?.("body", path);
      writeResponse(res, method, tooLarge(bodyLimit), true);
      return;
    }

    let leave: () => void;
    try {
      leave = guard.enter();
    } catch (err) {
      writeResponse(res, method, errorOutgoing(asRoutingError(err)), true);
      return;
    }
    let aborted = false;
    let done = false;
    // A body that does not arrive in time is answered 408 and its connection closed, not held.
    const bodyTimer =
      guard.bodyTimeoutMs > 0
        ? setTimeout(() => {
            if (done || aborted) return;
            done = true;
            chunks.length = 0;
            leave();
            res.cork(() => writeResponse(res, method, errorOutgoing(requestTimedOut(guard.bodyTimeoutMs)), true));
          }, guard.bodyTimeoutMs)
        : undefined;
    bodyTimer?.unref();
    res.onAborted(() => {
      aborted = true;
      clearTimeout(bodyTimer);
      leave();
    });
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (done || aborted) return;
      size += chunk.byteLength;
      if (size > bodyLimit) {
        done = true;
        clearTimeout(bodyTimer);
        leave();
        chunks.length = 0;
        options.onRefused?.("body", path);
        res.cork(() => writeResponse(res, method, tooLarge(bodyLimit), true));
        return;
      }
      // Copy: the chunk is neutered when this callback returns.
      if (chunk.byteLength > 0) chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (!isLast) return;
      done = true;
      clearTimeout(bodyTimer);
      leave();
      const request: HttpRequest = { method, path, query: new URLSearchParams(rawQuery), headers, body: Buffer.concat(chunks, size) };
      void Promise.resolve()
        .then(() => options.http(request))
        .then(normalizeOr500, (err: unknown) => errorOutgoing(asRoutingError(err)))
        .then((out) => {
          if (aborted) return;
          res.cork(() => writeResponse(res, method, out, false));
        });
    });
  });
}

export function copyHeaders(req: Uws.HttpRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  req.forEach((key, value) => {
    const name = key.toLowerCase();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  });
  return headers;
}

export function isUpgradeAttempt(headers: Readonly<Record<string, string>>): boolean {
  const connection = headers["connection"];
  return !!headers["upgrade"] && connection !== undefined && connection.split(",").some((token) => token.trim().toLowerCase() === "upgrade");
}

export function parseProtocols(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

function statusLine(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? "Unknown"}`;
}

/** Writes a whole response; call synchronously in a handler or inside `res.cork()`. */
export function writeResponse(res: Uws.HttpResponse, method: string, out: Outgoing, closeConnection: boolean): void {
  res.writeStatus(statusLine(out.status));
  for (const [name, value] of out.headers) res.writeHeader(name, value);
  // endWithoutBody(undefined, ...) writes "Content-Length: 9223372036854775808" and leaves the
  // response open: only ever call it with no argument or with a number.
  if ((out.status === 204 || out.status === 304) && !closeConnection) res.endWithoutBody();
  else if (out.status === 204 || out.status === 304) res.end(undefined, true);
  else if (method === "HEAD") res.endWithoutBody(out.body.length, closeConnection);
  else res.end(out.body, closeConnection);
}
