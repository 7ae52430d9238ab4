import { Type, type Static, type TSchema } from "@sinclair/typebox";

/**
 * The single source of every setting: its default, its `ROUTING_*` environment name (derived from
 * the key: httpPort -> ROUTING_HTTP_PORT), its description and its validation. `npm run config:doc`
 * prints the README's table from this object.
 */
const Port = (def: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: def, description });

export const ConfigSchema = Type.Object(
  {
    httpPort: Port(8080, "HTTP + WebSocket port. 0 picks a free one. A taken default moves to the next free port; a taken explicit port stops start-up."),
    mqttPort: Port(1883, "Embedded MQTT broker (TCP) port; same rules as ROUTING_HTTP_PORT."),
    host: Type.String({ default: "0.0.0.0", minLength: 1, description: "Address the listeners bind." }),
    jwtSecret: Type.Optional(Type.String({ minLength: 16, description: "HS256 secret (dev and tests). With neither this nor ROUTING_JWKS_URL, a dev secret is created in the data dir." })),
    jwksUrl: Type.Optional(Type.String({ pattern: "^https?://", description: "JWKS endpoint for RS256/ES256 tokens (production); cached, refetched on an unknown kid." })),
    jwtIssuer: Type.Optional(Type.String({ minLength: 1, description: "Required `iss` claim, if set." })),
    jwtAudience: Type.Optional(Type.String({ minLength: 1, description: "Required `aud` claim, if set." })),
    dataDir: Type.String({ default: "./data", minLength: 1, description: "Where the embedded default keeps its durable state (SQLite)." }),
    maxEnvelopeBytes: Type.Integer({ minimum: 256, maximum: 16 * 1024 * 1024, default: 65536, description: "Largest accepted envelope, as JSON bytes." }),
    gatewayEngine: Type.Union([Type.Literal("uws"), Type.Literal("ws")], { default: "uws", description: "WebSocket/HTTP engine: `uws` (uWebSockets.js, native) or `ws` (portable, Node http)." }),
    bus: Type.Union([Type.Literal("embedded")], { default: "embedded", description: "Ingress bus implementation." }),
    store: Type.Union([Type.Literal("embedded")], { default: "embedded", description: "Mailbox, de-duplication and device-token store." }),
    sqliteSync: Type.Union([Type.Literal("full"), Type.Literal("normal")], { default: "full", description: "SQLite `synchronous` for the embedded store: `full` survives power loss, `normal` survives process crashes." }),
    busMaxAttempts: Type.Integer({ minimum: 1, maximum: 100, default: 5, description: "Deliveries of a bus record before it is dead-lettered." }),
    busRetryBaseMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 200, description: "First redelivery delay after a failure; doubles per attempt (max 30 s)." }),
    routerMaxInFlight: Type.Integer({ minimum: 1, maximum: 100_000, default: 512, description: "Bus records the router works on at once; intake pauses when full." }),
    dedupTtlSeconds: Type.Integer({ minimum: 1, default: 7 * 24 * 3600, description: "How long a (recipient, messageId) pair is remembered for de-duplication." }),
    wsMaxBufferBytes: Type.Integer({ minimum: 1024, default: 1024 * 1024, description: "Per-connection send buffer limit; a slower reader is closed with 4008." }),
    heartbeatSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30, description: "WebSocket ping interval; a session without a pong for two intervals is closed with 4000." }),
    authTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: "Time a new connection has to become online." }),
    shutdownTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: "Upper bound for a graceful shutdown (SIGTERM)." }),
    presenceTtlSeconds: Type.Integer({ minimum: 2, default: 30, description: "Presence entries expire this long after the instance's last heartbeat." }),
    instanceId: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$", description: "Stable unique id of this node; default: hostname-pid-random." })),
    logLevel: Type.Union(["fatal", "error", "warn", "info", "debug", "trace"].map((l) => Type.Literal(l)), { default: "info", description: "Log level." }),
  },
  { additionalProperties: false },
);

export type Config = Readonly<Static<typeof ConfigSchema>> & { readonly instanceId: string };

export function envName(key: string): string {
  return "ROUTING_" + key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

export function settingEntries(): Array<[string, TSchema]> {
  return Object.entries(ConfigSchema.properties);
}
