import type { TokenVerifier } from "../auth/verifier.ts";
import type { DeviceStore } from "../backends/device-store.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { Ingress } from "../routing/ingress.ts";
import { STAMP_ALLOWANCE_BYTES } from "../routing/ingress.ts";
import { createEngine } from "./create-engine.ts";
import type { BinaryStreamRoute, GatewayEngine, HttpRequest, HttpResponse, SocketListener, UpgradeDecision, UpgradeRequest } from "./engine.ts";
import { bearerToken, createHttpRoutes, errorResponse, type OperatorEndpoints } from "./http-routes.ts";
import type { DeliveryMode, PendingSession, Session, SessionHost } from "./sessions.ts";
import { createFrameHandler } from "./socket-frames.ts";
import type { ConnectionLimiter } from "../limits/index.ts";
import type { EngineOptions } from "./engine.ts";
import { holdUntilOpened, type HeldSlot } from "./upgrade-slots.ts";
import type { BatchLimits } from "./batch.ts";
import { createEventStreamRoute, type EventStreamDeps } from "./sse/events.ts";
import type { Tickets } from "./sse/tickets.ts";
import { closeMoved, movedTo, type Placement } from "./moved.ts";

export interface GatewayDeps {
  readonly engine: "uws" | "ws";
  readonly verifier: TokenVerifier;
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly sessions: SessionHost;
  readonly metrics: Metrics;
  readonly maxEnvelopeBytes: number;
  readonly ready: () => Promise<boolean>;
  readonly log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void; debug?(obj: object, msg: string): void };
  /** /openapi.json, /asyncapi.json, /status, /status.json (operator tools, issue 7). */
  readonly operator?: OperatorEndpoints;
  /** Pages outside the API (the demo, issue 17): asked first; undefined passes the request on. */
  readonly pages?: (request: HttpRequest) => Promise<HttpResponse | undefined>;
  /** Byte-stream WebSocket paths on the same port: MQTT over WebSocket (issue 4). */
  readonly streams?: readonly BinaryStreamRoute[];
  /** Per-identity connection limit (issue 14): a slot is taken before the 101. */
  readonly connections?: ConnectionLimiter;
  /** HTTP hygiene for the engine (issue 14): header/body timeouts, unauthenticated-socket cap. */
  readonly hygiene?: EngineOptions<unknown>["hygiene"];
  /** ROUTING_HTTP_REUSE_PORT: share the port (uws only); off, the port is this process's alone. */
  readonly reusePort?: boolean;
  /** `GET /events` (Server-Sent Events) and `POST /tickets` (issue 20): off without a ticket service. */
  readonly tickets?: Tickets;
  /** Sharded delivery's MOVED for event streams (gateway/sse/events.ts). */
  readonly movedTo?: EventStreamDeps["movedTo"];
  /** `POST /send/batch` (issue 20): ROUTING_MAX_BATCH_ENVELOPES / ROUTING_MAX_BATCH_BYTES; off without. */
  readonly batch?: BatchLimits;
  /** `sharded` delivery (issue 15): sessions belong on their shard's owner (MOVED), `GET /route`. */
  readonly placement?: Placement;
}

interface SocketContext {
  /** The session actor, authenticated in its `connecting` state before the 101. */
  readonly pending: PendingSession;
  readonly slot: HeldSlot;
  /** The owner's URL when this node does not own the caller's shard: opened, then closed 4010 MOVED. */
  readonly moved?: string;
}

/**
 * The token of a WebSocket upgrade: the Authorization header, or (browsers, which cannot set
 * headers) the first Sec-WebSocket-Protocol value, which the server then echoes.
 */
function upgradeToken(req: UpgradeRequest): { token: string | undefined; protocol?: string } {
  const fromHeader = bearerToken(req.headers);
  if (fromHeader !== undefined) return { token: fromHeader };
  const offered = req.headers["sec-websocket-protocol"]?.split(",")[0]?.trim();
  return offered ? { token: offered, protocol: offered } : { token: undefined };
}

function deliveryMode(raw: string | null): DeliveryMode {
  if (raw === null || raw === "poke") return "poke";
  if (raw === "push") return "push";
  throw new RoutingError("INVALID_REQUEST", "delivery must be poke or push");
}

/** HTTP routes and WebSocket sessions on one engine. */
/**
 * What a WebSocket's events mean to its session. A class, not an object of closures: one lives per
 * idle connection (README, "Performance": idle connections).
 */
class SessionListener implements SocketListener {
  readonly #session: Session;
  readonly #onFrame: (session: Session, text: string | null) => void;
  readonly #slot: HeldSlot;

  constructor(session: Session, onFrame: (session: Session, text: string | null) => void, slot: HeldSlot) {
    this.#session = session;
    this.#onFrame = onFrame;
    this.#slot = slot;
  }

  message(text: string | null): void {
    this.#onFrame(this.#session, text);
  }

  pong(): void {
    this.#session.actor.send({ type: "session.pong" });
  }

  drain(): void {
    if (this.#session.transport.bufferedAmount() === 0) this.#session.actor.send({ type: "session.flushed" });
  }

  closed(code: number): void {
    this.#slot.release();
    this.#session.actor.send({ type: "session.socket.closed", code });
  }
}

export function createGateway(deps: GatewayDeps) {
  let accepting = true;
  const onFrame = createFrameHandler({
    ingress: deps.ingress,
    mailbox: deps.mailbox,
    maxEnvelopeBytes: deps.maxEnvelopeBytes,
    rejected: (code) => deps.metrics.rejected("ws", code),
    verifier: deps.verifier,
  });
  const routes = createHttpRoutes({ ...deps, accepting: () => accepting, ready: async () => accepting && (await deps.ready()) });
  const pages = deps.pages;
  const http = pages === undefined ? routes : async (req: HttpRequest): Promise<HttpResponse> => (await pages(req)) ?? routes(req);

  const isAccepting = () => accepting;
  const eventStream =
    deps.tickets === undefined
      ? undefined
      : createEventStreamRoute({
          verifier: deps.verifier,
          tickets: deps.tickets,
          sessions: deps.sessions,
          connections: deps.connections,
          accepting: isAccepting,
          movedTo: deps.movedTo,
          counted: (status) => deps.metrics.httpRequest("/events", status),
        });
  const batchBytes = deps.batch?.maxBytes;

  const engine: GatewayEngine = createEngine<SocketContext>(deps.engine, {
    http,
    eventStream,
    wsPath: "/connect",
    maxBodyBytes: deps.maxEnvelopeBytes + 4 * STAMP_ALLOWANCE_BYTES,
    maxBodyBytesFor: batchBytes === undefined ? undefined : (path) => (path === "/send/batch" ? batchBytes : undefined),
    streams: deps.streams,
    hygiene: deps.hygiene,
    reusePort: deps.reusePort,
    // Past the session heartbeat's own verdict (4000 after two silent beats, i.e. at most three).
    idleTimeoutSeconds: Math.ceil((4 * deps.sessions.heartbeatMs) / 1000),
    // Input the engine refuses before any handler sees it still counts as a refused envelope.
    onRefused: (kind, path) => {
      if (kind === "frame") deps.metrics.rejected("ws", "ENVELOPE_TOO_LARGE");
      else if (path.startsWith("/send")) deps.metrics.rejected("http", "ENVELOPE_TOO_LARGE");
    },
    sockets: {
      async upgrade(req): Promise<UpgradeDecision<SocketContext>> {
        let pending: PendingSession | undefined;
        try {
          if (!accepting) throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere");
          const mode = deliveryMode(req.query.get("delivery"));
          const { token, protocol } = upgradeToken(req);
          // The session actor verifies the token in its connecting state; a refusal never gets a 101.
          pending = deps.sessions.begin("ws", mode, () => deps.verifier.verify(token));
          const principal = await pending.verdict;
          const moved = movedTo(deps.placement, principal.identity);
          if (moved !== undefined) {
            // Not this node's shard: the socket opens only to be closed 4010 MOVED; no session is attached.
            pending.abandon();
            return { accept: true, protocol, context: { pending, slot: holdUntilOpened(undefined), moved } };
          }
          // Over the identity's connection limit: 429 TOO_MANY_CONNECTIONS, never a 101.
          const slot = holdUntilOpened(deps.connections === undefined ? undefined : await deps.connections.acquire(principal.identity), pending.abandon);
          return { accept: true, protocol, context: { pending, slot } };
        } catch (err) {
          pending?.abandon();
          return { accept: false, response: errorResponse(asRoutingError(err)) };
        }
      },
      open(socket, { pending, slot, moved }) {
        slot.opened();
        if (moved !== undefined) return closeMoved(socket, moved, () => slot.release());
        return new SessionListener(pending.attach(socket), onFrame, slot);
      },
    },
  });

  return {
    engine,
    listen: (host: string, port: number) => engine.listen(host, port),
    /** Stop intake: new sends and upgrades get 503 SHUTTING_DOWN, readiness turns 503. */
    stopAccepting: () => {
      accepting = false;
    },
    close: () => engine.close(),
  };
}

export type Gateway = ReturnType<typeof createGateway>;
