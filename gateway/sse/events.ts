import { randomUUID } from "node:crypto";
import type { Principal, TokenVerifier } from "../../auth/verifier.ts";
import { asRoutingError, RoutingError } from "../../core/errors.ts";
import type { Urn } from "../../core/urn.ts";
import type { ConnectionLimiter } from "../../limits/index.ts";
import { bearerToken, errorResponse } from "../http-routes.ts";
import type { DeliveryMode, SessionHost } from "../sessions.ts";
import { holdUntilOpened } from "../upgrade-slots.ts";
import { closeEvent, SseSessionTransport } from "./session-transport.ts";
import { EVENT_STREAM_HEADERS, type EventStreamDecision, type EventStreamListener, type EventStreamRoute } from "./stream.ts";
import type { Tickets } from "./tickets.ts";

export const EVENTS_PATH = "/events";
const MOVED = 4010;

export interface EventStreamDeps {
  readonly verifier: TokenVerifier;
  readonly tickets: Tickets;
  readonly sessions: SessionHost;
  readonly connections?: ConnectionLimiter;
  readonly accepting: () => boolean;
  /**
   * Sharded delivery (issue 15): the URL of the node that owns `identity`'s shard when it is not
   * this one. The stream then opens only to say so: `event: close` `{"code": 4010, "url": ...}`.
   * Absent (or undefined for this identity): the stream is hosted here.
   */
  readonly movedTo?: (identity: Urn) => Promise<string | undefined> | string | undefined;
  /** Counts each answer (routing_http_requests_total{route="/events"}). */
  readonly counted?: (status: number) => void;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Query parameters that would carry a JWT (a JWT in a URL lands in proxy logs): refused outright. */
const TOKEN_PARAMS = ["token", "access_token", "jwt", "authorization", "bearer", "id_token"];
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function refuseQueryToken(query: URLSearchParams): void {
  for (const [name, value] of query) {
    if (TOKEN_PARAMS.includes(name.toLowerCase()) || JWT_SHAPE.test(value)) {
      throw new RoutingError(
        "TOKEN_INVALID",
        "a token is never accepted in the query string; send it as Authorization: Bearer, or use a ticket from POST /tickets",
      );
    }
  }
}

function deliveryMode(raw: string | null): DeliveryMode {
  if (raw === null || raw === "poke") return "poke";
  if (raw === "push") return "push";
  throw new RoutingError("INVALID_REQUEST", "delivery must be poke or push");
}

/** What a stream's end and drain mean to its session (one per stream, as SessionListener is per socket). */
class StreamSessionListener implements EventStreamListener {
  constructor(
    readonly session: ReturnType<SessionHost["open"]>,
    readonly release: () => void,
  ) {}

  drain(): void {
    if (this.session.transport.bufferedAmount() === 0) this.session.actor.send({ type: "session.flushed" });
  }

  closed(): void {
    this.release();
    if (this.session.actor.getSnapshot().status === "active") this.session.actor.send({ type: "session.socket.closed", code: 1000 });
  }
}

/**
 * `GET /events`: a Server-Sent-Events stream as one more transport of the session actor (presence,
 * the connection limit, heartbeat, drain, the buffer bound are the session's, as for WebSocket).
 * Auth: the Authorization header, or `?ticket=` (single use); a JWT in the query is refused.
 * Refusals are plain error responses (401, 429, 503): never a stream.
 */
export function createEventStreamRoute(deps: EventStreamDeps): EventStreamRoute {
  async function authenticate(headers: Readonly<Record<string, string>>, query: URLSearchParams): Promise<Principal> {
    refuseQueryToken(query);
    const header = bearerToken(headers);
    if (header !== undefined) return deps.verifier.verify(header);
    const ticket = query.get("ticket");
    if (ticket === null) throw new RoutingError("TOKEN_MISSING", "send Authorization: Bearer <jwt>, or ?ticket= from POST /tickets");
    return deps.tickets.redeem(ticket);
  }

  return {
    path: EVENTS_PATH,
    async decide({ headers, query }): Promise<EventStreamDecision> {
      // As every HTTP answer: a well-formed incoming x-request-id, else a new one.
      const incoming = headers["x-request-id"];
      const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      const streamHeaders = { ...EVENT_STREAM_HEADERS, "x-request-id": requestId };
      try {
        if (!deps.accepting()) throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere");
        const mode = deliveryMode(query.get("delivery"));
        const principal = await authenticate(headers, query);
        const moved = await deps.movedTo?.(principal.identity);
        if (moved !== undefined) {
          deps.counted?.(200);
          return {
            accept: true,
            headers: streamHeaders,
            start(handle) {
              handle.write(closeEvent(MOVED, moved));
              handle.end();
              return { drain: () => {}, closed: () => {} };
            },
          };
        }
        // Over the identity's connection limit: 429 TOO_MANY_CONNECTIONS, never a stream.
        const slot = holdUntilOpened(deps.connections === undefined ? undefined : await deps.connections.acquire(principal.identity));
        deps.counted?.(200);
        return {
          accept: true,
          headers: EVENT_STREAM_HEADERS,
          start(handle) {
            slot.opened();
            const transport = new SseSessionTransport(handle);
            const session = deps.sessions.open(transport, "sse", mode, principal);
            transport.pong = () => session.actor.send({ type: "session.pong" });
            return new StreamSessionListener(session, () => slot.release());
          },
        };
      } catch (err) {
        const response = errorResponse(asRoutingError(err));
        deps.counted?.(response.status);
        return { accept: false, response: { ...response, headers: { ...response.headers, "x-request-id": requestId } } };
      }
    },
  };
}
