import type { HttpHygiene } from "./request-guard.ts";
import type { EventStreamRoute } from "./sse/stream.ts";

/**
 * The seam between the gateway's logic (routes, sessions) and a socket engine. Two engines
 * implement it, `uws` (uWebSockets.js, native) and `ws` (Node http + ws); both must pass the same
 * end-to-end suite. Engines know nothing of envelopes, tokens or actors.
 */

export interface HttpRequest {
  readonly method: string;
  /** Path without the query string, e.g. "/messages". */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  /** The whole body; the engine stops reading (and answers 413) past `maxBodyBytes`. */
  readonly body: Buffer;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

export type HttpHandler = (request: HttpRequest) => Promise<HttpResponse>;

export interface UpgradeRequest {
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string>>;
}

/** Accept: the engine completes the upgrade, echoing `protocol` if given, and calls `open` with `context`. */
export type UpgradeDecision<C> =
  { readonly accept: true; readonly protocol?: string; readonly context: C } | { readonly accept: false; readonly response: HttpResponse };

export interface SocketHandle {
  /** Queues a text frame. Returns false if the socket is already closed. */
  send(text: string): boolean;
  /** Bytes queued but not yet written to the kernel. */
  bufferedAmount(): number;
  ping(): void;
  /** Closes with a code and a short reason; idempotent. */
  close(code: number, reason: string): void;
}

export interface SocketListener {
  /** A text frame, or null for a binary one (the contract's frames are text). */
  message(text: string | null): void;
  pong(): void;
  /** The send buffer went down after backpressure. */
  drain(): void;
  /** The socket is gone, whoever closed it. Called exactly once. */
  closed(code: number): void;
}

export interface SocketHooks<C> {
  /** Decides an upgrade on `wsPath`; a refusal never completes the handshake (no 101). */
  upgrade(request: UpgradeRequest): Promise<UpgradeDecision<C>>;
  open(socket: SocketHandle, context: C): SocketListener;
}

/**
 * A WebSocket carrying a byte stream (MQTT over WebSocket): binary frames only. Frame boundaries
 * mean nothing to such a protocol; the listener sees the bytes in order.
 */
export interface BinarySocket {
  /** Queues the bytes as one binary frame. Returns false if the socket is already closed. */
  send(data: Uint8Array): boolean;
  /** Bytes queued but not yet written to the kernel. */
  bufferedAmount(): number;
  /** Closes with a code and a short reason; idempotent. */
  close(code: number, reason: string): void;
}

export interface BinaryListener {
  /** A binary frame's bytes (the listener owns this copy). */
  message(data: Buffer): void;
  /** The send buffer went down after backpressure. */
  drain(): void;
  /** The socket is gone, whoever closed it. Called exactly once, never from inside a handle call. */
  closed(code: number): void;
}

/**
 * A second WebSocket path whose frames the engine hands through as bytes, with no upgrade hook:
 * the protocol on top authenticates in-band (MQTT's CONNECT). The engine accepts an upgrade only
 * if the client offers one of `subprotocols`, echoes the first it offered, answers anything else
 * with 400, closes a socket that sends a text frame with 1003 and one that sends a frame over
 * `maxFrameBytes` with 1009 (or drops it, as uWS does).
 */
export interface BinaryStreamRoute {
  readonly path: string;
  readonly subprotocols: readonly string[];
  /** Largest frame accepted, in bytes. */
  readonly maxFrameBytes: number;
  open(socket: BinarySocket, request: UpgradeRequest): BinaryListener;
}

export interface EngineOptions<C> {
  readonly http: HttpHandler;
  readonly sockets: SocketHooks<C>;
  /** Path that upgrades to WebSocket, "/connect". */
  readonly wsPath: string;
  /** Largest HTTP body and WebSocket frame accepted, in bytes. */
  readonly maxBodyBytes: number;
  /** The body limit of one HTTP path when it differs from `maxBodyBytes` (`POST /send/batch`); undefined: the default. */
  readonly maxBodyBytesFor?: (path: string) => number | undefined;
  /** Byte-stream WebSocket paths besides `wsPath` (e.g. MQTT at "/mqtt"); none by default. */
  readonly streams?: readonly BinaryStreamRoute[];
  /** Header and body timeouts, the cap on unauthenticated requests (request-guard.ts); none by default. */
  readonly hygiene?: HttpHygiene;
  /**
   * Share the port with other processes (SO_REUSEPORT; ROUTING_HTTP_REUSE_PORT), the kernel splitting
   * connections between them. Off by default: the port is this process's alone, and a taken port fails
   * with EADDRINUSE. Only the uws engine can share; the ws engine refuses the option.
   */
  readonly reusePort?: boolean;
  /**
   * The engine's own liveness on `wsPath`, as a backstop: a socket silent this long is pinged by the
   * engine and dropped if it stays silent (uWS `idleTimeout` + `sendPingsAutomatically`). The
   * contract's 4000 close comes first, from the session host's one shared heartbeat. Undefined: off.
   */
  readonly idleTimeoutSeconds?: number;
  /**
   * Told when the engine itself refuses input over `maxBodyBytes`: an HTTP body (answered 413, with
   * the request's path) or a frame on `wsPath` (the socket closed with 1009). Nothing else sees those.
   */
  readonly onRefused?: (kind: "body" | "frame", path: string) => void;
  /** A streamed GET route (Server-Sent Events at "/events", gateway/sse/); none by default. */
  readonly eventStream?: EventStreamRoute;
}

export interface GatewayEngine {
  readonly name: "uws" | "ws";
  /** Binds; resolves the bound port. Rejects with code EADDRINUSE when the port is taken. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting connections and closes the listener (open sockets are closed by their sessions first). */
  close(): Promise<void>;
}
