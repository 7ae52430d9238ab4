import { ConnectRefusedError, TransportClosedError, type Transport, type TransportConnectOptions, type TransportFactory } from "./transport.ts";
import { RoutingClientError, type QueuedMessage, type SecureEnvelope, type ServerFrame, type WebSocketConstructor, type WebSocketLike } from "./types.ts";

/** Node's `ws` emits the HTTP answer of a refused upgrade; browsers hide it. */
interface UpgradeResponse {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
}
interface EmitterSocket {
  on(event: "unexpected-response", cb: (req: { destroy(): void }, res: UpgradeResponse) => void): void;
}

function hasOn(ws: WebSocketLike): ws is WebSocketLike & EmitterSocket {
  return typeof (ws as Partial<EmitterSocket>).on === "function";
}

/** Retry-After: delta seconds or an HTTP date. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export function connectUrl(base: string, delivery: string): string {
  const url = new URL("/connect", base.replace(/^http/, "ws"));
  url.searchParams.set("delivery", delivery);
  return url.toString();
}

type Pending = { resolve: (frame: ServerFrame) => void; reject: (err: Error) => void };

/**
 * The WebSocket transport. Authenticates with the `Authorization` header when given a WebSocket
 * class other than the runtime's global one (Node's `ws`), else with the token as the subprotocol
 * (browsers cannot set headers; the service echoes it).
 */
export function websocketTransport(WebSocketClass: WebSocketConstructor): TransportFactory {
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  const viaHeader = WebSocketClass !== global;
  return ({ url, token, delivery, events }: TransportConnectOptions) =>
    new Promise<Transport>((resolve, reject) => {
      const address = connectUrl(url, delivery);
      const ws = viaHeader ? new WebSocketClass(address, [], { headers: { authorization: `Bearer ${token}` } }) : new WebSocketClass(address, [token]);
      const pending = new Map<string, Pending>();
      let opened = false;
      let done = false;
      let seq = 0;

      if (hasOn(ws)) {
        ws.on("unexpected-response", (req, res) => {
          // Headers are all a retry needs; the body is dropped with the request.
          const header = res.headers["retry-after"];
          fail(new ConnectRefusedError(`upgrade refused: ${res.statusCode}`, res.statusCode, retryAfterMs(Array.isArray(header) ? header[0] : header)));
          req.destroy();
        });
      }

      function fail(err: ConnectRefusedError): void {
        if (done) return;
        done = true;
        reject(err);
      }

      function request(frame: Record<string, unknown>, prefix: string): Promise<ServerFrame> {
        if (done || ws.readyState !== 1) return Promise.reject(new TransportClosedError("connection closed"));
        const ref = `${prefix}${++seq}`;
        return new Promise<ServerFrame>((res, rej) => {
          pending.set(ref, { resolve: res, reject: rej });
          ws.send(JSON.stringify({ ...frame, ref }));
        });
      }

      const transport: Transport = {
        async send(envelope: SecureEnvelope & { messageId: string }) {
          const answer = await request({ type: "send", envelope }, "s");
          return answer.type === "sent" ? answer.messageId : envelope.messageId;
        },
        async fetch(limit: number): Promise<QueuedMessage[]> {
          const answer = await request({ type: "fetch", limit }, "f");
          return answer.type === "messages" ? answer.messages : [];
        },
        ack(messageIds) {
          if (!done && ws.readyState === 1 && messageIds.length > 0) ws.send(JSON.stringify({ type: "ack", messageIds }));
        },
        async auth(newToken: string) {
          const answer = await request({ type: "auth", token: newToken }, "a");
          return answer.type === "authed" ? answer.exp : undefined;
        },
        close(code = 1000, reason = "") {
          ws.close(code, reason);
        },
      };

      ws.onopen = () => {
        if (done) return ws.close(1000, "");
        opened = true;
        resolve(transport);
      };
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        let frame: ServerFrame;
        try {
          frame = JSON.parse(event.data) as ServerFrame;
        } catch {
          return;
        }
        if (frame.type === "poke") return events.poke();
        if (frame.type === "message") return events.message(frame.message);
        const waiter = frame.ref === undefined ? undefined : pending.get(frame.ref);
        if (!waiter || frame.ref === undefined) return;
        pending.delete(frame.ref);
        if (frame.type === "error") waiter.reject(new RoutingClientError(frame.code, frame.message, frame.retryAfterMs));
        else waiter.resolve(frame);
      };
      ws.onerror = () => {
        // A close event follows; a connection that never opened is refused there.
      };
      ws.onclose = (event) => {
        if (!opened) return fail(new ConnectRefusedError(`connection failed (${event.code})`));
        if (done) return;
        done = true;
        for (const waiter of pending.values()) waiter.reject(new TransportClosedError(`connection closed (${event.code})`));
        pending.clear();
        events.closed(event.code, event.reason);
      };
    });
}
