import type { FetchLike } from "./http.ts";
import { sseTransport } from "./sse-transport.ts";
import { ConnectRefusedError, type TransportFactory } from "./transport.ts";
import { RoutingClientError, type AnyWebSocketClass, type TransportKind, type WebSocketConstructor } from "./types.ts";
import { websocketTransport } from "./websocket-transport.ts";

export interface TransportChoice {
  readonly transport?: TransportKind;
  readonly transports?: Partial<Record<"websocket" | "sse", TransportFactory>>;
  readonly WebSocket?: AnyWebSocketClass;
  readonly fetch?: FetchLike;
}

/**
 * A refused WebSocket that an event stream may get past: no HTTP answer at all (blocked by a proxy,
 * a browser that hides the status), or one the service would never give an upgrade (a proxy's 400,
 * 403, 404, 426, 502). The service's own refusals (401 bad token, 429 too many connections, 503
 * draining) would refuse the stream too.
 */
function worthFallingBack(err: unknown): boolean {
  if (!(err instanceof ConnectRefusedError)) return false;
  return err.status === undefined || ![401, 429, 503].includes(err.status);
}

/**
 * The transport the options ask for. `auto`: WebSocket; where it cannot be opened, `GET /events`.
 * Once the stream worked after a failed WebSocket, later reconnects go straight to it (the
 * network that broke WebSocket is still there); a failed stream tries WebSocket again first.
 */
export function pickTransport(options: TransportChoice): TransportFactory {
  const kind = options.transport ?? "auto";
  const sse =
    options.transports?.sse ??
    (options.fetch !== undefined ? sseTransport(options.fetch) : typeof globalThis.fetch === "function" ? sseTransport() : undefined);
  if (kind === "sse") {
    if (!sse) throw new RoutingClientError("TRANSPORT_UNAVAILABLE", 'transport "sse" needs fetch (browsers, Node 20) or options.transports.sse');
    return sse;
  }
  let websocket = options.transports?.websocket;
  if (!websocket) {
    // The browser's and ws's classes both have the members WebSocketConstructor names; only their typings differ.
    const WebSocketClass = (options.WebSocket ?? (globalThis as { WebSocket?: AnyWebSocketClass }).WebSocket) as WebSocketConstructor | undefined;
    if (!WebSocketClass) {
      if (kind === "auto" && sse) return sse;
      throw new RoutingClientError("TRANSPORT_UNAVAILABLE", "no WebSocket class: pass one in the options (e.g. the ws package's in Node 20)");
    }
    websocket = websocketTransport(WebSocketClass);
  }
  if (kind === "websocket" || !sse) return websocket;
  const ws = websocket;
  let preferStream = false;
  return async (connect) => {
    if (!preferStream) {
      try {
        return await ws(connect);
      } catch (err) {
        if (!worthFallingBack(err)) throw err;
      }
    }
    try {
      const transport = await sse(connect);
      preferStream = true;
      return transport;
    } catch (err) {
      preferStream = false;
      throw err;
    }
  };
}
