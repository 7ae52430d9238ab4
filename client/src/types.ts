/**
 * The wire shapes the SDK speaks (the service's contract: SecureEnvelope, QueuedMessage and the
 * WebSocket frames). Kept free of DOM and Node types so the package compiles for both.
 */

/** What a client sends. The payload fields are opaque base64: the service never reads them. */
export interface SecureEnvelope {
  recipientId: string;
  /** 1..128 chars of [A-Za-z0-9._:-]; the idempotency key per recipient. The SDK fills one in if absent. */
  messageId?: string;
  senderId?: string;
  isEphemeral?: boolean;
  /** 0..10; >= 5 is high priority. */
  priority?: number;
  encryptedData: string;
  encryptedSymmetricKey?: string;
  signature?: string;
}

/** A stored message as the service hands it out; it stays in the mailbox until acked. */
export interface QueuedMessage {
  id: string;
  envelope: SecureEnvelope & { messageId: string; senderId: string };
  queuedAt: string;
}

export type ConnectionState = "connecting" | "online" | "offline";

export type Delivery = "poke" | "push";

/** `auto`: WebSocket, falling back to SSE (`GET /events`) where a WebSocket cannot be opened. */
export type TransportKind = "auto" | "websocket" | "sse";

/** The constructor shape of a WebSocket: the browser's, or the `ws` package's in Node 20. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
/**
 * What the options accept as `WebSocket`: any class (the browser's, `ws`'s). Their typings differ
 * in event shapes, so the SDK takes the class as it is and uses it through `WebSocketConstructor`.
 */
export type AnyWebSocketClass = new (...args: never[]) => object;
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }) => WebSocketLike;

/** Frames the service sends (the SDK reads these). */
export type ServerFrame =
  | { type: "poke" }
  | { type: "message"; message: QueuedMessage }
  | { type: "sent"; ref: string; messageId: string }
  | { type: "messages"; ref: string; messages: QueuedMessage[] }
  | { type: "authed"; ref: string; exp?: number }
  | { type: "error"; ref?: string; code: string; message: string; retryAfterMs?: number };

/** Error codes a retry of the same request can get past (the service's registry marks them retryable). */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  "RATE_LIMITED",
  "MAILBOX_FULL",
  "OVERLOADED",
  "BACKEND_UNAVAILABLE",
  "SHUTTING_DOWN",
  "INTERNAL",
  "NO_SHARD_OWNER",
]);

/** A request the service refused, with the contract's error code. */
export class RoutingClientError extends Error {
  override readonly name = "RoutingClientError";
  readonly code: string;
  readonly retryAfterMs: number | undefined;
  constructor(code: string, message: string, retryAfterMs?: number) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
  get retryable(): boolean {
    return RETRYABLE_CODES.has(this.code);
  }
}
