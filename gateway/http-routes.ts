import { Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
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

const RegisterDeviceSchema = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 4096 }), platform: Type.Union([Type.Literal("fcm"), Type.Literal("apns")]) },
  { additionalProperties: false },
);
const UnregisterDeviceSchema = Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });
const registerDevice = TypeCompiler.Compile(RegisterDeviceSchema);
const unregisterDevice = TypeCompiler.Compile(UnregisterDeviceSchema);

export const DEFAULT_FETCH_LIMIT = 50;
export const MAX_FETCH_LIMIT = 500;

export interface HttpRouteDeps {
  readonly verifier: TokenVerifier;
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly metrics: Metrics;
  /** Every backend reachable and not shutting down. */
  readonly ready: () => Promise<boolean>;
  readonly accepting: () => boolean;
  readonly log: { error(obj: object, msg: string): void };
}

const JSON_HEADERS = { "content-type": "application/json" } as const;

function json(status: number, body: string): HttpResponse {
  return { status, headers: JSON_HEADERS, body };
}

export function errorResponse(error: RoutingError): HttpResponse {
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

  type Route = (req: HttpRequest) => Promise<HttpResponse>;
  const routes: Record<string, Partial<Record<string, Route>>> = {
    "/send": {
      POST: async (req) => {
        const identity = await authenticate(req);
        if (!deps.accepting()) throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; retry");
        const messageId = await ingress.acceptBytes(req.body, identity, "http");
        return json(202, JSON.stringify({ messageId }));
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
        if (!isAckBody(body)) throw new RoutingError("INVALID_REQUEST", "body must be {\"messageIds\": [1..500 ids]}");
        await mailbox.ack(identity, body.messageIds);
        return { status: 204 };
      },
    },
    "/register-device": {
      POST: async (req) => {
        const identity = await authenticate(req);
        const body = parseJson(req.body);
        if (!registerDevice.Check(body)) throw new RoutingError("INVALID_REQUEST", 'body must be {"token": "...", "platform": "fcm" | "apns"}');
        await devices.register(identity, body.token, body.platform);
        return { status: 204 };
      },
      DELETE: async (req) => {
        const identity = await authenticate(req);
        const body = parseJson(req.body);
        if (!unregisterDevice.Check(body)) throw new RoutingError("INVALID_REQUEST", 'body must be {"token": "..."}');
        await devices.unregister(identity, body.token);
        return { status: 204 };
      },
    },
    "/connect": {
      GET: async () => {
        throw new RoutingError("INVALID_REQUEST", "GET /connect is a WebSocket upgrade");
      },
    },
    "/healthz": { GET: async () => json(200, '{"status":"ok"}') },
    "/readyz": {
      GET: async () => ((await deps.ready()) ? json(200, '{"status":"ready"}') : json(503, '{"status":"unavailable"}')),
    },
    "/metrics": {
      GET: async () => ({ status: 200, headers: { "content-type": metrics.registry.contentType }, body: await metrics.scrape() }),
    },
  };

  return async (req) => {
    const byMethod = routes[req.path];
    const route = byMethod?.[req.method.toUpperCase()];
    let response: HttpResponse;
    try {
      if (!byMethod) throw new RoutingError("NOT_FOUND", `no route ${req.path}`);
      if (!route) throw new RoutingError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${req.path}`);
      response = await route(req);
    } catch (err) {
      const error = asRoutingError(err);
      if (error.code === "INTERNAL") deps.log.error({ err: error.cause, path: req.path }, "request failed");
      response = errorResponse(error);
    }
    metrics.httpRequest(byMethod ? req.path : "other", response.status);
    return response;
  };
}
