/**
 * The one registry of error codes. Every error a client can see is one of these: HTTP status,
 * whether retrying the same request can succeed, and the line the README's error table shows.
 * Messages never carry payload bytes (zero knowledge): only header fields and sizes.
 */
export const ERRORS = {
  INVALID_JSON: { status: 400, retryable: false, doc: "The body is not valid JSON." },
  INVALID_ENVELOPE: { status: 400, retryable: false, doc: "The SecureEnvelope fails the schema (missing or malformed field)." },
  INVALID_FRAME: { status: 400, retryable: false, doc: "A WebSocket or MQTT frame is not one the contract defines." },
  INVALID_REQUEST: { status: 400, retryable: false, doc: "Query or body parameters are out of range." },
  TOKEN_MISSING: { status: 401, retryable: false, doc: "No bearer token was presented." },
  TOKEN_INVALID: { status: 401, retryable: false, doc: "The token's signature, algorithm or structure is wrong." },
  TOKEN_EXPIRED: { status: 401, retryable: false, doc: "The token's `exp` has passed." },
  INVALID_IDENTITY: { status: 401, retryable: false, doc: "The token's `sub` is not a valid URN or bare id." },
  SENDER_MISMATCH: { status: 403, retryable: false, doc: "`senderId` differs from the authenticated identity." },
  FORBIDDEN: { status: 403, retryable: false, doc: "The identity may not do this (e.g. a foreign MQTT topic)." },
  NOT_FOUND: { status: 404, retryable: false, doc: "No such route." },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false, doc: "The route exists but not with this method." },
  ENVELOPE_TOO_LARGE: { status: 413, retryable: false, doc: "The envelope exceeds ROUTING_MAX_ENVELOPE_BYTES." },
  MAILBOX_FULL: {
    status: 429,
    retryable: true,
    doc: "The recipient's mailbox is at ROUTING_MAILBOX_MAX_MESSAGES or ROUTING_MAILBOX_MAX_BYTES; retry after `Retry-After` (docs/data-lifecycle.md).",
  },
  RATE_LIMITED: {
    status: 429,
    retryable: true,
    doc: "The identity sends faster than ROUTING_SEND_RATE_PER_SECOND (plus ROUTING_SEND_BURST); retry after `retryAfterMs` (docs/limits.md).",
  },
  TOO_MANY_CONNECTIONS: {
    status: 429,
    retryable: true,
    doc: "The identity holds ROUTING_MAX_CONNECTIONS_PER_IDENTITY live WebSocket + MQTT sessions across the cluster.",
  },
  REQUEST_TIMEOUT: {
    status: 408,
    retryable: true,
    doc: "The request's headers or body did not arrive within ROUTING_HTTP_HEADER_TIMEOUT_MS / ROUTING_HTTP_BODY_TIMEOUT_MS.",
  },
  OVERLOADED: {
    status: 503,
    retryable: true,
    doc: "The ingress holds ROUTING_INGRESS_MAX_PENDING accepted, unrouted messages (or too many unauthenticated sockets); nothing was accepted, retry after `retryAfterMs`.",
  },
  BACKEND_UNAVAILABLE: { status: 503, retryable: true, doc: "A backend (bus, store) did not accept the operation; nothing was accepted." },
  NO_SHARD_OWNER: {
    status: 503,
    retryable: true,
    doc: "`sharded` delivery: the caller's shard has no owner right now (it is changing hands); retry after `Retry-After` (docs/sharding.md).",
  },
  SHUTTING_DOWN: { status: 503, retryable: true, doc: "The instance is draining; retry on another instance." },
  INTERNAL: { status: 500, retryable: true, doc: "An unexpected failure; logged with a request id." },
} as const satisfies Record<string, { status: number; retryable: boolean; doc: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class RoutingError extends Error {
  override readonly name = "RoutingError";
  readonly code: ErrorCode;
  /** For retryable refusals that know when a retry can succeed (RATE_LIMITED, OVERLOADED, MAILBOX_FULL): HTTP `Retry-After`, `retryAfterMs` in bodies and frames. */
  readonly retryAfterMs: number | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options);
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterMs));
  }
  get status(): number {
    return ERRORS[this.code].status;
  }
  get retryable(): boolean {
    return ERRORS[this.code].retryable;
  }
  toBody(): { error: { code: ErrorCode; message: string; retryAfterMs?: number } } {
    if (this.retryAfterMs !== undefined) return { error: { code: this.code, message: this.message, retryAfterMs: this.retryAfterMs } };
    return { error: { code: this.code, message: this.message } };
  }
}

/** Any thrown value as a RoutingError; unknown failures become INTERNAL without leaking their text. */
export function asRoutingError(err: unknown): RoutingError {
  if (err instanceof RoutingError) return err;
  return new RoutingError("INTERNAL", "internal error", { cause: err });
}

/** A backend (bus, store) that did not accept an operation: BACKEND_UNAVAILABLE naming the operation only, never payload bytes. */
export function unavailable(what: string, cause?: unknown): RoutingError {
  return new RoutingError("BACKEND_UNAVAILABLE", what, cause === undefined ? undefined : { cause });
}
