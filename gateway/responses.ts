import { validateHeaderName, validateHeaderValue } from "node:http";
import { RoutingError, asRoutingError } from "../core/errors.ts";
import type { BinaryStreamRoute, HttpResponse } from "./engine.ts";

/*
 * What both engines do the same way around a response or a close: validate and normalise the
 * handler's response, build error bodies, clamp close codes and reasons. Engines import these
 * rather than keeping copies, so uws and ws answer byte-for-byte alike.
 */

export interface Outgoing {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
}

/** Headers the engine owns: framing and connection management. */
export const ENGINE_HEADERS = new Set(["content-length", "transfer-encoding", "connection"]);

/** Validates a handler's response (throws on a bad status or header) into what is written. */
export function normalize(response: HttpResponse): Outgoing {
  const status = response.status;
  if (!Number.isInteger(status) || status < 200 || status > 599) throw new RangeError(`invalid HTTP status ${status}`);
  const headers: Array<readonly [string, string]> = [];
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    if (ENGINE_HEADERS.has(name.toLowerCase())) continue;
    validateHeaderName(name);
    validateHeaderValue(name, value);
    headers.push([name, value]);
  }
  const raw = response.body ?? "";
  const body = status === 204 || status === 304 ? Buffer.alloc(0) : typeof raw === "string" ? Buffer.from(raw, "utf8") : raw;
  return { status, headers, body };
}

export function normalizeOr500(response: HttpResponse): Outgoing {
  try {
    return normalize(response);
  } catch (err) {
    return errorOutgoing(asRoutingError(err));
  }
}

export function errorOutgoing(err: RoutingError): Outgoing {
  return {
    status: err.status,
    headers: [["content-type", "application/json"]],
    body: Buffer.from(JSON.stringify(err.toBody()), "utf8"),
  };
}

export function missingSubprotocol(route: BinaryStreamRoute): RoutingError {
  return new RoutingError("INVALID_REQUEST", `the WebSocket at ${route.path} needs the subprotocol ${route.subprotocols.join(" or ")}`);
}

export function tooLarge(maxBody: number): Outgoing {
  return errorOutgoing(new RoutingError("ENVELOPE_TOO_LARGE", `the request body exceeds the limit of ${maxBody} bytes`));
}

/** A WebSocket close code a peer accepts; anything else becomes 1011 (internal error). */
export function closeCode(code: number): number {
  const valid = Number.isInteger(code) && ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999));
  return valid ? code : 1011;
}

/** A close reason fits 123 bytes of UTF-8; cut on a character boundary. */
export function closeReason(reason: string): string {
  if (Buffer.byteLength(reason, "utf8") <= 123) return reason;
  let out = "";
  let bytes = 0;
  for (const ch of reason) {
    const n = Buffer.byteLength(ch, "utf8");
    if (bytes + n > 123) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** Surfaces a bug from inside a native callback without unwinding through uWS. */
export function reportAsync(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}
