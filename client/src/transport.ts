import type { Delivery, QueuedMessage, SecureEnvelope } from "./types.ts";

/**
 * The seam between the client's logic (reconnects, pulls, dedup, acks, retries) and the wire.
 * `websocket-transport.ts` implements it over `GET /connect`; `sse-transport.ts` over
 * `GET /events` with a ticket (sends, fetches and acks over the HTTP routes). `select-transport.ts`
 * picks one, or falls back from the first to the second (`transport: "auto"`).
 *
 * A transport is one connection: once `closed` fired it is done, and the client opens a new one.
 */
export interface Transport {
  /** Resolves the message id once the service durably accepted it; rejects with a RoutingClientError or TransportClosedError. */
  send(envelope: SecureEnvelope & { messageId: string }): Promise<string>;
  /** Up to `limit` unacked messages, oldest first (high priority first). */
  fetch(limit: number): Promise<QueuedMessage[]>;
  /** Fire and forget: the service answers an ack only when it fails. */
  ack(messageIds: readonly string[]): void;
  /** Replaces the connection's token (same identity); resolves its expiry in unix seconds, if it has one. */
  auth(token: string): Promise<number | undefined>;
  close(code?: number, reason?: string): void;
}

export interface TransportEvents {
  /** The mailbox has something new (poke delivery). */
  poke(): void;
  /** A message handed over directly (push delivery, or ephemeral). */
  message(message: QueuedMessage): void;
  /** The connection is gone (called once); `code` is the WebSocket close code, `reason` its reason. */
  closed(code: number, reason: string): void;
}

export interface TransportConnectOptions {
  /** The service's base URL, http(s)://host:port. */
  readonly url: string;
  readonly token: string;
  readonly delivery: Delivery;
  readonly events: TransportEvents;
}

/** Opens a connection; rejects with a ConnectRefusedError when the service refused it (or could not be reached). */
export type TransportFactory = (options: TransportConnectOptions) => Promise<Transport>;

/** The connection ended while a request was waiting for its answer: retry it on the next one. */
export class TransportClosedError extends Error {
  override readonly name = "TransportClosedError";
}

/**
 * Opening a connection failed. `status` is the HTTP answer to the upgrade when the runtime exposes
 * it (Node's `ws` does, a browser's WebSocket does not: there it is undefined, as for an
 * unreachable server); `retryAfterMs` comes from a `Retry-After` header.
 */
export class ConnectRefusedError extends Error {
  override readonly name = "ConnectRefusedError";
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}
