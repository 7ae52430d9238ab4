import { randomUUID } from "node:crypto";
import type { DeviceStore } from "../backends/device-store.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import type { TokenVerifier } from "../auth/verifier.ts";
import { parseJson } from "../core/envelope.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import { isAckBody, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Metrics } from "../metrics/registry.ts";
import type { Ingress } from "../routing/ingress.ts";
import type { HttpHandler, HttpRequest, HttpResponse } from "./engine.ts";
import { registerDeviceBody, unregisterDeviceBody } from "./register-device.ts";
import { sendBatch, type BatchLimits } from "./batch.ts";
import type { Tickets } from "./sse/tickets.ts";
import { routeOf, type Placement } from "./moved.ts";

export { RegisterDeviceSchema, UnregisterDeviceSchema } from "./register-device.ts";

export const DEFAULT_FETCH_LIMIT = 50;
export const MAX_FETCH_LIMIT = 500;

export type HttpMethod = "GET" | "POST" | "DELETE";

/**
 * Every HTTP route and its methods. The handler serves exactly these (its handler object's type is
 * derived from this table) and the OpenAPI document describes exactly these (its type too; a test
 * checks the served document against the live handler).
 */
export const HTTP_ROUTES = {
  "/send": ["POST"],
  "/send/batch": ["POST"],
  "/tickets": ["POST"],
  "/events": ["GET"],
  "/messages": ["GET"],
  "/messages/ack": ["POST"],
  "/register-device": ["POST", "DELETE"],
  "/connect": ["GET"],
  "/route": ["GET"],
  "/healthz": ["GET"],
  "/readyz": ["GET"],
  "/metrics": ["GET"],
  "/openapi.json": ["GET"],
  "/asyncapi.json": ["GET"],
  "/status": ["GET"],
  "/status.json": ["GET"],
} as const satisfies Record<string, readonly HttpMethod[]>;

export type RouteTable = typeof HTTP_ROUTES;
/** One T per route and method of the table, no more, no less. */
export type PerRoute<T> = { readonly [P in keyof RouteTable]: { readonly [M in RouteTable[P][number]]: T } };

/** Per request: its id (a well-formed incoming `x-request-id`, else a new UUID) and what the route learnt. */
export interface RequestContext {
  readonly requestId: string;
  /** Set by /send once accepted, so the request's log line names the message. */
  messageId?: string;
}

/** Operator endpoints (issue 7); without them those routes answer 404. */
export interface OperatorEndpoints {
  /** JSON text of the OpenAPI 3.1 document. */
  readonly openapi: () => string;
  /** JSON text of the AsyncAPI 3.0 document. */
  readonly asyncapi: () => string;
  /** The status page and the Content-Security-Policy admitting its inline script and style. */
  readonly statusPage: () => { readonly html: string; readonly csp: string };
  /** The status page's data: counts and node ids only. */
  readonly status: () => Promise<unknown>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface HttpRouteDeps {
  readonly verifier: TokenVerifier;
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly metrics: Metrics;
  /** Every backend reachable and not shutting down. */
  readonly ready: () => Promise<boolean>;
  readonly accepting: () => boolean;
  /** Every line about a request carries its requestId (and the messageId once known); never a body byte. */
  readonly log: { error(obj: object, msg: string): void; warn?(obj: object, msg: string): void; debug?(obj: object, msg: string): void };
  readonly operator?: OperatorEndpoints;
  /** `POST /send/batch` (issue 20); absent: the route answers 404. */
  readonly batch?: BatchLimits;
  /** `POST /tickets` for `GET /events` (issue 20); absent: the route answers 404. */
  readonly tickets?: Tickets;
  /** Which node holds the caller's sessions (`GET /route`, issue 15). */
  readonly placement?: Placement;
}

const JSON_HEADERS = { "content-type": "application/json" } as const;

function json(status: number, body: string): HttpResponse {
  return { status, headers: JSON_HEADERS, body };
}

export function errorResponse(error: RoutingError): HttpResponse {
  if (error.retryAfterMs !== undefined) {
    // Whole seconds, rounded up (RFC 9110); the body carries the exact `retryAfterMs`.
    return {
      status: error.status,
      headers: { ...JSON_HEADERS, "retry-after": String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))) },
      body: JSON.stringify(error.toBody()),
    };
  }
  return json(error.status, JSON.stringify(error.toBody()));
}

export function bearerToken(headers: Readonly<Record<string, string>>): string | undefined {
  const header = headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : "";
}

/** `?limit=N`: default 50, 1..500, anything else is a 400 (not silently clamped). */
export function parseLimit(raw: string | null | undefined): number {
  if (raw === null || raw === undefined || raw === "") return DEFAULT_FETCH_LIMIT;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_FETCH_LIMIT) throw new RoutingError("INVALID_REQUEST", `limit must be an integer from 1 to ${MAX_FETCH_LIMIT}`);
  return n;
}

/** The contract's HTTP routes (WebSocket /connect is the engine's upgrade path). */
export function createHttpRoutes(deps: HttpRouteDeps): HttpHandler {
  const { verifier, ingress, mailbox, devices, metrics } = deps;

  const authenticate = async (req: HttpRequest): Promise<Urn> => (await verifier.verify(bearerToken(req.headers))).identity;

  type Route = (req: HttpRequest, ctx: RequestContext) => Promise<HttpResponse>;
  const operator = (): OperatorEndpoints => {
    if (!deps.operator) throw new RoutingError("NOT_FOUND", "operator endpoints are not enabled on this node");
    return deps.operator;
  };
  const routes: PerRoute<Route> = {
    "/send": {
      POST: async (req, ctx) => {
        const identity = await authenticate(req);
        if (!deps.accepting()) throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; retry");
        const messageId = await ingress.acceptBytes(req.body, identity, "http");
        ctx.messageId = messageId;
        return json(202, JSON.stringify({ messageId }));
      },
    },
    "/send/batch": {
      POST: async (req) => {
        const identity = await authenticate(req);
        if (!deps.accepting()) throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; retry");
        if (!deps.batch) throw new RoutingError("NOT_FOUND", "batch send is not enabled on this node");
        return json(200, await sendBatch(ingress, deps.batch, req.body, identity));
      },
    },
    "/tickets": {
      POST: async (req) => {
        const principal = await verifier.verify(bearerToken(req.headers));
        if (!deps.tickets) throw new RoutingError("NOT_FOUND", "GET /events is not enabled on this node");
        return { status: 200, headers: { ...JSON_HEADERS, "cache-control": "no-store" }, body: JSON.stringify(await deps.tickets.issue(principal)) };
      },
    },
    "/events": {
      GET: async () => {
        throw new RoutingError("NOT_FOUND", "GET /events is not enabled on this node");
      },
    },
    "/messages": {
      GET: async (req) => {
        const identity = await authenticate(req);
        const entries = await mailbox.fetch(identity, parseLimit(req.query.get("limit")));
        return json(200, `{"messages":[${entries.map((e) => queuedMessageJson(e.messageId, e.envelope, e.queuedAt)).join(",")}]}`);
      },
    },
    "/messages/ack": {
      POST: async (req) => {
        const identity = await authenticate(req);
        const body = parseJson(req.body);
        if (!isAckBody(body)) throw new RoutingError("INVALID_REQUEST", 'body must be {"messageIds": [1..500 ids]}');
        await mailbox.ack(identity, body.messageIds);
        return { status: 204 };
      },
    },
    "/register-device": {
      POST: async (req) => {
        const identity = await authenticate(req);
        await registerDeviceBody(devices, identity, parseJson(req.body));
        return { status: 204 };
      },
      DELETE: async (req) => {
        const identity = await authenticate(req);
        await unregisterDeviceBody(devices, identity, parseJson(req.body));
        return { status: 204 };
      },
    },
    "/connect": {
      GET: async () => {
        throw new RoutingError("INVALID_REQUEST", "GET /connect is a WebSocket upgrade");
      },
    },
    "/route": {
      GET: async (req) => {
        const identity = await authenticate(req);
        if (!deps.placement) throw new RoutingError("NOT_FOUND", "shard routing is not enabled on this node");
        return json(200, JSON.stringify(routeOf(deps.placement, identity)));
      },
    },
    "/healthz": { GET: async () => json(200, '{"status":"ok"}') },
    "/readyz": {
      GET: async () => ((await deps.ready()) ? json(200, '{"status":"ready"}') : json(503, '{"status":"unavailable"}')),
    },
    "/metrics": {
      GET: async () => ({ status: 200, headers: { "content-type": metrics.registry.contentType }, body: await metrics.scrape() }),
    },
    "/openapi.json": { GET: async () => json(200, operator().openapi()) },
    "/asyncapi.json": { GET: async () => json(200, operator().asyncapi()) },
    "/status": {
      GET: async () => {
        const page = operator().statusPage();
        return {
          status: 200,
          headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": page.csp, "cache-control": "no-store" },
          body: page.html,
        };
      },
    },
    "/status.json": {
      GET: async () => ({ status: 200, headers: { ...JSON_HEADERS, "cache-control": "no-store" }, body: JSON.stringify(await operator().status()) }),
    },
  };
  const table: Readonly<Record<string, Readonly<Partial<Record<string, Route>>>>> = routes;

  return async (req) => {
    const started = Date.now();
    const incoming = req.headers["x-request-id"];
    const ctx: RequestContext = { requestId: incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID() };
    const byMethod = Object.hasOwn(table, req.path) ? table[req.path] : undefined;
    const route = byMethod?.[req.method.toUpperCase()];
    let response: HttpResponse;
    let code: string | undefined;
    try {
      if (!byMethod) throw new RoutingError("NOT_FOUND", `no route ${req.path}`);
      if (!route) throw new RoutingError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${req.path}`);
      response = await route(req, ctx);
    } catch (err) {
      const error = asRoutingError(err);
      if (error.code === "INTERNAL") deps.log.error({ err: error.cause, requestId: ctx.requestId, method: req.method, path: req.path }, "request failed");
      else if (error.status >= 500) deps.log.warn?.({ requestId: ctx.requestId, method: req.method, path: req.path, code: error.code }, "request refused");
      response = errorResponse(error);
      code = error.code;
    }
    const label = byMethod ? req.path : "other";
    metrics.httpRequest(label, response.status);
    deps.log.debug?.(
      { requestId: ctx.requestId, messageId: ctx.messageId, method: req.method, route: label, status: response.status, code, ms: Date.now() - started },
      "http request",
    );
    return { ...response, headers: { ...response.headers, "x-request-id": ctx.requestId } };
  };
}
