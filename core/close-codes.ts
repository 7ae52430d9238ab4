/** WebSocket close codes the gateway uses. docs/protocol.md lists them; clients may switch on them. */
export const CLOSE = {
  /** Normal closure requested by either side. */
  NORMAL: 1000,
  /** The instance is shutting down (drain); reconnect, possibly elsewhere. */
  GOING_AWAY: 1001,
  /** A frame that is not valid UTF-8 JSON text (binary frames included). */
  UNSUPPORTED_DATA: 1003,
  /** Heartbeat: no pong within the liveness window. */
  HEARTBEAT_TIMEOUT: 4000,
  /** The session did not become online within the auth window. */
  AUTH_TIMEOUT: 4001,
  /** The token expired while connected. */
  TOKEN_EXPIRED: 4002,
  /** The client reads too slowly: its send buffer passed ROUTING_WS_MAX_BUFFER_BYTES. */
  SLOW_CONSUMER: 4008,
  /** A frame larger than the envelope limit plus framing. */
  MESSAGE_TOO_BIG: 1009,
  /** `sharded` delivery: this node does not own the caller's shard; the reason is the owner's ROUTING_PUBLIC_URL. */
  MOVED: 4010,
  /** Presence or another backend failed while opening the session. */
  BACKEND_UNAVAILABLE: 4503,
} as const;

export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];
