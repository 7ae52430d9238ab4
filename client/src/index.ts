export { RoutingClient, type RoutingClientOptions } from "./client.ts";
export { Backoff, type BackoffOptions } from "./backoff.ts";
export {
  ConnectRefusedError,
  TransportClosedError,
  type Transport,
  type TransportConnectOptions,
  type TransportEvents,
  type TransportFactory,
} from "./transport.ts";
export { websocketTransport } from "./websocket-transport.ts";
export { sseTransport } from "./sse-transport.ts";
export type { BatchOutcome } from "./batch.ts";
export { tokenExpiry } from "./token.ts";
export {
  RoutingClientError,
  type ConnectionState,
  type Delivery,
  type QueuedMessage,
  type SecureEnvelope,
  type ServerFrame,
  type TransportKind,
  type AnyWebSocketClass,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./types.ts";
