import { Type, type TSchema } from "@sinclair/typebox";
import { ErrorBodySchema } from "../core/error-body.ts";
import { QueuedMessageSchema, SecureEnvelopeSchema } from "../core/envelope.ts";
import { ERRORS, type ErrorCode } from "../core/errors.ts";
import { AckBodySchema } from "../core/frames.ts";
import { DEFAULT_FETCH_LIMIT, HTTP_ROUTES, MAX_FETCH_LIMIT, RegisterDeviceSchema, UnregisterDeviceSchema, type PerRoute } from "../gateway/http-routes.ts";
import { serviceVersion } from "./version.ts";

/*
 * The OpenAPI 3.1 document of the HTTP API, built from the same typebox objects the validators
 * compile (components.schemas holds those very objects; JSON.stringify drops typebox's symbols,
 * leaving JSON Schema 2020-12). Its `paths` type is derived from HTTP_ROUTES, so a route added to
 * the table without documentation (or documented but not served) does not compile.
 */

export const SendAcceptedSchema = Type.Object({ messageId: Type.String() }, { $id: "SendAccepted", additionalProperties: false });
export const TicketSchema = Type.Object({ ticket: Type.String(), expiresIn: Type.Literal(30) }, { $id: "Ticket", additionalProperties: false });
export const SendBatchSchema = Type.Object(
  {
    envelopes: Type.Array(Type.Unknown({ description: "A SecureEnvelope; each is validated on its own (its error is its result)." }), {
      minItems: 1,
      maxItems: 100,
      description: "1..ROUTING_MAX_BATCH_ENVELOPES (default 100).",
    }),
  },
  { $id: "SendBatch", additionalProperties: false },
);
export const SendBatchResultsSchema = Type.Object(
  {
    results: Type.Array(
      Type.Union([
        Type.Object({ messageId: Type.String() }, { additionalProperties: false }),
        Type.Object(
          { error: Type.Object({ code: Type.String(), message: Type.String(), retryAfterMs: Type.Optional(Type.Integer()) }) },
          { additionalProperties: false },
        ),
      ]),
    ),
  },
  { $id: "SendBatchResults", additionalProperties: false },
);
export const StatusBodySchema = Type.Object({ status: Type.String() }, { $id: "StatusBody" });
export const RouteAnswerSchema = Type.Object(
  {
    shard: Type.Integer({ minimum: 0 }),
    owner: Type.String({ description: "Instance id of the owning node." }),
    url: Type.String({ description: "The owner's ROUTING_PUBLIC_URL." }),
  },
  { $id: "RouteAnswer", additionalProperties: false },
);

interface MediaType {
  readonly schema: object;
}
interface ResponseObject {
  readonly description: string;
  readonly headers?: Readonly<Record<string, object>>;
  readonly content?: Readonly<Record<string, MediaType>>;
}
export interface OperationObject {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  readonly security?: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
  readonly parameters?: readonly object[];
  readonly requestBody?: { readonly required: boolean; readonly content: Readonly<Record<string, MediaType>> };
  readonly responses: Readonly<Record<string, ResponseObject>>;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const REQUEST_ID_HEADER = { "x-request-id": { $ref: "#/components/headers/RequestId" } };
const PUBLIC: OperationObject["security"] = [];

function jsonResponse(description: string, schema: object): ResponseObject {
  return { description, headers: REQUEST_ID_HEADER, content: { "application/json": { schema } } };
}

function empty(description: string): ResponseObject {
  return { description, headers: REQUEST_ID_HEADER };
}

/** The error responses with these statuses, each naming the registry's codes that use it. */
function errors(...statuses: number[]): Record<string, ResponseObject> {
  const out: Record<string, ResponseObject> = {};
  for (const status of statuses) {
    const codes = (Object.keys(ERRORS) as ErrorCode[]).filter((c) => ERRORS[c].status === status);
    out[String(status)] = jsonResponse(codes.map((c) => `\`${c}\`: ${ERRORS[c].doc}`).join(" "), ref("ErrorBody"));
  }
  return out;
}

function body(schemaName: string): OperationObject["requestBody"] {
  return { required: true, content: { "application/json": { schema: ref(schemaName) } } };
}

const AUTHED = [400, 401, 408, 503];

const OPERATIONS: PerRoute<OperationObject> = {
  "/send": {
    POST: {
      operationId: "send",
      summary: "Send a SecureEnvelope",
      description:
        "202 only once the ingress bus has durably accepted it. The same messageId sent again to the same recipient is stored and delivered once, and still answered 202 with that id.",
      tags: ["messages"],
      requestBody: body("SecureEnvelope"),
      responses: { "202": jsonResponse("Durably accepted.", ref("SendAccepted")), ...errors(...AUTHED, 403, 413, 429) },
    },
  },
  "/send/batch": {
    POST: {
      operationId: "sendBatch",
      summary: "Send several SecureEnvelopes in one request (group messages)",
      description:
        "1..ROUTING_MAX_BATCH_ENVELOPES envelopes, at most ROUTING_MAX_BATCH_BYTES in all. Each obeys every rule of POST /send on its own and counts once against the sender's rate; one refused never fails the others. The answer lists, in the order given, each item's messageId (durable before the answer, as a 202) or its error. A body that is not such an object: 400; over the byte cap: 413.",
      tags: ["messages"],
      requestBody: body("SendBatch"),
      responses: { "200": jsonResponse("One result per envelope, in order.", ref("SendBatchResults")), ...errors(...AUTHED, 413) },
    },
  },
  "/tickets": {
    POST: {
      operationId: "issueTicket",
      summary: "A single-use ticket for GET /events (browsers' EventSource cannot set headers)",
      description: "Valid 30 s, once, on any node of the cluster. A ticket names the caller's identity and carries its token's expiry.",
      tags: ["sessions"],
      responses: { "200": jsonResponse("The ticket.", ref("Ticket")), ...errors(...AUTHED) },
    },
  },
  "/events": {
    GET: {
      operationId: "events",
      summary: "Server-Sent Events: a session like a WebSocket one, for networks where WebSocket fails",
      description:
        'Auth: `Authorization: Bearer <jwt>`, or `?ticket=` from POST /tickets; a JWT in the query string is refused (401). Bad auth is an HTTP error, never a stream. Each event is `event: <frame type>` + `data: <the WebSocket frame>` (`poke`, `message`); `: ping` every ROUTING_HEARTBEAT_SECONDS; the stream ends with `event: close` `{"code": 1001}` when the node drains (`{"code": 4010, "url": ...}` for MOVED). Sends, fetches and acks go over the HTTP routes.',
      tags: ["sessions"],
      parameters: [
        { name: "delivery", in: "query", required: false, schema: { type: "string", enum: ["poke", "push"], default: "poke" } },
        { name: "ticket", in: "query", required: false, schema: { type: "string" } },
      ],
      responses: {
        "200": { description: "The event stream.", headers: REQUEST_ID_HEADER, content: { "text/event-stream": { schema: { type: "string" } } } },
        ...errors(...AUTHED, 429),
      },
    },
  },
  "/messages": {
    GET: {
      operationId: "fetchMessages",
      summary: "Fetch unacked messages",
      description: "High priority (>= 5) first, then oldest first. A message is returned by every fetch until acked.",
      tags: ["messages"],
      parameters: [
        { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: MAX_FETCH_LIMIT, default: DEFAULT_FETCH_LIMIT } },
      ],
      responses: {
        "200": jsonResponse('The caller\'s unacked messages (an empty mailbox is `{"messages": []}`).', {
          type: "object",
          required: ["messages"],
          properties: { messages: { type: "array", items: ref("QueuedMessage") } },
        }),
        ...errors(...AUTHED),
      },
    },
  },
  "/messages/ack": {
    POST: {
      operationId: "ackMessages",
      summary: "Acknowledge messages",
      description: "Durable before the answer; unknown ids are ignored; idempotent.",
      tags: ["messages"],
      requestBody: body("AckBody"),
      responses: { "204": empty("Acknowledged."), ...errors(...AUTHED) },
    },
  },
  "/register-device": {
    POST: {
      operationId: "registerDevice",
      summary: "Register the caller's push token",
      tags: ["devices"],
      requestBody: body("RegisterDevice"),
      responses: { "204": empty("Registered."), ...errors(...AUTHED) },
    },
    DELETE: {
      operationId: "unregisterDevice",
      summary: "Remove the caller's push token",
      tags: ["devices"],
      requestBody: body("UnregisterDevice"),
      responses: { "204": empty("Removed (or was not there)."), ...errors(...AUTHED) },
    },
  },
  "/connect": {
    GET: {
      operationId: "connect",
      summary: "WebSocket upgrade (frames: see /asyncapi.json)",
      description:
        "Token in `Authorization: Bearer` or as the `Sec-WebSocket-Protocol` value (echoed). A refused upgrade answers the HTTP error, never 101. A plain GET without the upgrade headers is a 400.",
      tags: ["sessions"],
      parameters: [{ name: "delivery", in: "query", required: false, schema: { type: "string", enum: ["poke", "push"], default: "poke" } }],
      responses: { "101": { description: "Switching protocols: the session is open." }, ...errors(...AUTHED) },
    },
  },
  "/route": {
    GET: {
      operationId: "route",
      summary: "Which node holds the caller's sessions",
      description:
        "The caller's shard (CRC-32 of its URN mod ROUTING_SHARD_COUNT), the instance owning it and that node's ROUTING_PUBLIC_URL: open the WebSocket or MQTT connection there (another node closes it with 4010 MOVED). Answered by every node; without `sharded` delivery, this node.",
      tags: ["sessions"],
      responses: {
        "200": jsonResponse("The owner of the caller's shard.", ref("RouteAnswer")),
        ...errors(...AUTHED),
      },
    },
  },
  "/healthz": {
    GET: {
      operationId: "healthz",
      summary: "Process alive",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": jsonResponse("Alive.", ref("StatusBody")) },
    },
  },
  "/readyz": {
    GET: {
      operationId: "readyz",
      summary: "Every backend reachable and not draining",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": jsonResponse("Ready.", ref("StatusBody")), "503": jsonResponse("Not ready (a backend is down, or draining).", ref("StatusBody")) },
    },
  },
  "/metrics": {
    GET: {
      operationId: "metrics",
      summary: "Prometheus metrics",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": { description: "Prometheus text format.", headers: REQUEST_ID_HEADER, content: { "text/plain": { schema: { type: "string" } } } } },
    },
  },
  "/openapi.json": {
    GET: {
      operationId: "openapi",
      summary: "This document",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": jsonResponse("OpenAPI 3.1.", { type: "object" }) },
    },
  },
  "/asyncapi.json": {
    GET: {
      operationId: "asyncapi",
      summary: "The AsyncAPI 3.0 document of the WebSocket frames and MQTT topics",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": jsonResponse("AsyncAPI 3.0.", { type: "object" }) },
    },
  },
  "/status": {
    GET: {
      operationId: "statusPage",
      summary: "Status page (HTML; polls /status.json every second)",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": { description: "One static HTML page.", headers: REQUEST_ID_HEADER, content: { "text/html": { schema: { type: "string" } } } } },
    },
  },
  "/status.json": {
    GET: {
      operationId: "status",
      summary: "The status page's data: nodes, sessions by protocol and state, bus, throughput",
      description: "Counts and node ids only; no identity, message id or payload.",
      tags: ["operations"],
      security: PUBLIC,
      responses: { "200": jsonResponse("The cluster as this node sees it.", { type: "object" }) },
    },
  },
};

/** The schemas the document embeds, by component name: the validators' own typebox objects. */
export const OPENAPI_SCHEMAS: Readonly<Record<string, TSchema>> = {
  SecureEnvelope: SecureEnvelopeSchema,
  QueuedMessage: QueuedMessageSchema,
  ErrorBody: ErrorBodySchema,
  AckBody: AckBodySchema,
  RegisterDevice: RegisterDeviceSchema,
  UnregisterDevice: UnregisterDeviceSchema,
  SendAccepted: SendAcceptedSchema,
  SendBatch: SendBatchSchema,
  SendBatchResults: SendBatchResultsSchema,
  Ticket: TicketSchema,
  StatusBody: StatusBodySchema,
  RouteAnswer: RouteAnswerSchema,
};

export interface OpenApiDocument {
  readonly openapi: "3.1.0";
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly paths: Readonly<Record<string, Readonly<Record<string, OperationObject>>>>;
  readonly components: {
    readonly schemas: Readonly<Record<string, TSchema>>;
    readonly securitySchemes: Readonly<Record<string, object>>;
    readonly headers: Readonly<Record<string, object>>;
  };
  readonly security: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
}

/** The document as an object (schemas are the typebox objects themselves); serve `JSON.stringify` of it. */
export function buildOpenApi(): OpenApiDocument {
  const paths: Record<string, Record<string, OperationObject>> = {};
  for (const [path, methods] of Object.entries(HTTP_ROUTES)) {
    const operations = OPERATIONS[path as keyof typeof OPERATIONS] as Readonly<Record<string, OperationObject>>;
    paths[path] = Object.fromEntries(methods.map((m) => [m.toLowerCase(), operations[m]]));
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Routing Service",
      version: serviceVersion(),
      description:
        "HTTP API of the router for end-to-end-encrypted SecureEnvelopes. Payload fields are opaque base64, never decoded, logged or measured. Wire contract: shared/CONTRACT.md.",
    },
    paths,
    components: {
      schemas: OPENAPI_SCHEMAS,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "`sub` is the identity (a URN, or a bare id for urn:sm:user:<id>)." },
      },
      headers: {
        RequestId: { description: "The request's id (a well-formed incoming x-request-id, else a new UUID); error logs carry it.", schema: { type: "string" } },
      },
    },
    security: [{ bearer: [] }],
  };
}
