import { Type, type Static, type TSchema } from "@sinclair/typebox";

/**
 * The single source of every setting: its default, its `ROUTING_*` environment name (derived from
 * the key: httpPort -> ROUTING_HTTP_PORT), its description and its validation. `npm run config:doc`
 * prints the table of docs/configuration.md from this object.
 */
const Port = (def: number, description: string) => Type.Integer({ minimum: 0, maximum: 65535, default: def, description });

export const ConfigSchema = Type.Object(
  {
    httpPort: Port(8080, "HTTP + WebSocket port. 0 picks a free one. A taken default moves to the next free port; a taken explicit port stops start-up."),
    httpReusePort: Type.Boolean({
      default: false,
      description:
        "Share ROUTING_HTTP_PORT with other processes (SO_REUSEPORT, uws engine only): the kernel splits connections between them. Off: the port is this process's alone.",
    }),
    mqttPort: Port(1883, "Embedded MQTT broker (TCP) port; same rules as ROUTING_HTTP_PORT."),
    host: Type.String({ default: "0.0.0.0", minLength: 1, description: "Address the listeners bind." }),
    jwtSecret: Type.Optional(
      Type.String({
        minLength: 16,
        description: "HS256 secret (dev and tests). With neither this nor ROUTING_JWKS_URL, a dev secret is created in the data dir.",
      }),
    ),
    jwksUrl: Type.Optional(
      Type.String({ pattern: "^https?://", description: "JWKS endpoint for RS256/ES256 tokens (production); cached, refetched on an unknown kid." }),
    ),
    jwtIssuer: Type.Optional(Type.String({ minLength: 1, description: "Required `iss` claim, if set." })),
    jwtAudience: Type.Optional(Type.String({ minLength: 1, description: "Required `aud` claim, if set." })),
    dataDir: Type.String({ default: "./data", minLength: 1, description: "Where the embedded default keeps its durable state (SQLite)." }),
    maxEnvelopeBytes: Type.Integer({ minimum: 256, maximum: 16 * 1024 * 1024, default: 65536, description: "Largest accepted envelope, as JSON bytes." }),
    maxBatchEnvelopes: Type.Integer({ minimum: 1, maximum: 10_000, default: 100, description: "Most envelopes one `POST /send/batch` may carry." }),
    maxBatchBytes: Type.Integer({
      minimum: 1024,
      maximum: 64 * 1024 * 1024,
      default: 1_048_576,
      description: "Largest `POST /send/batch` body, in bytes (413 past it).",
    }),
    gatewayEngine: Type.Union([Type.Literal("uws"), Type.Literal("ws")], {
      default: "uws",
      description: "WebSocket/HTTP engine: `uws` (uWebSockets.js, native) or `ws` (portable, Node http).",
    }),
    bus: Type.Union([Type.Literal("embedded"), Type.Literal("nats"), Type.Literal("pubsub")], {
      default: "embedded",
      description: "Ingress bus: `embedded` (SQLite, one node), `nats` (JetStream) or `pubsub` (Google Pub/Sub).",
    }),
    store: Type.Union([Type.Literal("embedded"), Type.Literal("redis"), Type.Literal("firestore")], {
      default: "embedded",
      description: "Mailbox and de-duplication store: `embedded` (SQLite), `redis` or `firestore`.",
    }),
    sqliteSync: Type.Union([Type.Literal("full"), Type.Literal("normal")], {
      default: "full",
      description: "SQLite `synchronous` for the embedded store: `full` survives power loss, `normal` survives process crashes.",
    }),
    busMaxAttempts: Type.Integer({ minimum: 1, maximum: 100, default: 5, description: "Deliveries of a bus record before it is dead-lettered." }),
    busRetryBaseMs: Type.Integer({
      minimum: 1,
      maximum: 60_000,
      default: 200,
      description: "First redelivery delay after a failure; doubles per attempt, times a random 1..2 (jitter), max 30 s.",
    }),
    routerMaxInFlight: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 512,
      description: "Bus records the router works on at once; intake pauses when full.",
    }),
    dedupTtlSeconds: Type.Integer({
      minimum: 1,
      default: 30 * 24 * 3600,
      description:
        "How long a (recipient, messageId) pair is remembered for de-duplication; at least ROUTING_MAILBOX_RETENTION_SECONDS (a shorter one stops start-up).",
    }),
    // data life cycle (issue 21): docs/data-lifecycle.md
    mailboxRetentionSeconds: Type.Integer({
      minimum: 1,
      default: 30 * 24 * 3600,
      description: "An unacked message older than this is never returned again and is removed (docs/data-lifecycle.md).",
    }),
    mailboxMaxMessages: Type.Integer({
      minimum: 0,
      default: 10_000,
      description: "Per-recipient quota of unacked messages; a send past it is refused with MAILBOX_FULL. 0 switches it off.",
    }),
    mailboxMaxBytes: Type.Integer({
      minimum: 0,
      default: 64 * 1024 * 1024,
      description: "Per-recipient quota of unacked envelope bytes; a send past it is refused with MAILBOX_FULL. 0 switches it off.",
    }),
    wsMaxBufferBytes: Type.Integer({
      minimum: 1024,
      default: 1024 * 1024,
      description: "Per-connection send buffer limit; a slower reader is closed with 4008.",
    }),
    heartbeatSeconds: Type.Integer({
      minimum: 1,
      maximum: 3600,
      default: 30,
      description: "WebSocket ping interval; a session without a pong for two intervals is closed with 4000.",
    }),
    authTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: "Time a new connection has to become online." }),
    shutdownTimeoutMs: Type.Integer({
      minimum: 100,
      default: 10_000,
      description:
        "The drain deadline on SIGTERM: exit 0 once drained, or exit 1 when this has passed (or at a second SIGTERM); nothing accepted is lost either way.",
    }),
    presenceTtlSeconds: Type.Integer({ minimum: 2, default: 30, description: "Presence entries expire this long after the instance's last heartbeat." }),
    instanceId: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$", description: "Stable unique id of this node; default: hostname-pid-random." })),
    // cluster (issue 5/7)
    deviceStore: Type.Union([Type.Literal("embedded"), Type.Literal("firestore")], {
      default: "embedded",
      description: "Device-token store: `embedded` (SQLite) or `firestore`.",
    }),
    presence: Type.Union([Type.Literal("memory"), Type.Literal("redis")], {
      default: "memory",
      description: "Presence store: `memory` (one node) or `redis` (shared by the cluster).",
    }),
    signals: Type.Union([Type.Literal("local"), Type.Literal("nats"), Type.Literal("pubsub")], {
      default: "local",
      description: "How the router reaches sessions on other instances: `local` (one node), `nats` or `pubsub`.",
    }),
    deliveryStrategy: Type.Union([Type.Literal("targeted"), Type.Literal("broadcast"), Type.Literal("sharded")], {
      default: "targeted",
      description:
        "`targeted`: signal only the instances presence names; `broadcast`: every instance gets every signal and drops what it cannot deliver; `sharded`: each recipient's shard has one owner node that gets its signals and holds its sessions (docs/sharding.md).",
    }),
    // sharded delivery (issue 15; contract "Sharded delivery")
    shardCount: Type.Integer({
      minimum: 1,
      maximum: 65_536,
      default: 256,
      description: "Virtual shards of `sharded` delivery; every node of a cluster must have the same count (a node with another refuses to start).",
    }),
    shardLeaseSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 5, description: "A shard lease lapses this long after its owner's last renewal." }),
    publicUrl: Type.Optional(
      Type.String({
        pattern: "^https?://",
        description: "The base URL clients use to reach this node (sent in MOVED answers and by GET /route); default `http://<ROUTING_HOST>:<port>`.",
      }),
    ),
    redisUrl: Type.String({ default: "redis://127.0.0.1:6379", pattern: "^rediss?://", description: "Redis for presence and the redis store." }),
    redisPrefix: Type.String({ default: "routing:", minLength: 1, description: "Prefix of every Redis key this cluster writes." }),
    natsUrl: Type.String({ default: "nats://127.0.0.1:4222", minLength: 1, description: "NATS servers (comma-separated) for the JetStream bus and signals." }),
    natsPrefix: Type.String({
      default: "routing",
      pattern: "^[A-Za-z0-9_-]+$",
      description: "Names the JetStream stream, consumer and subjects (`<prefix>.ingress`, `<prefix>.delivery.<instance>`).",
    }),
    gcpProjectId: Type.String({ default: "routing-local", minLength: 1, description: "Google Cloud project of Pub/Sub and Firestore." }),
    pubsubEndpoint: Type.Optional(Type.String({ minLength: 1, description: "host:port of the Pub/Sub emulator; unset for Google Cloud." })),
    busAckWaitMs: Type.Integer({
      minimum: 1000,
      maximum: 600_000,
      default: 30_000,
      description: "Distributed buses: how long an unacked delivery is held before another instance gets it (a crashed consumer).",
    }),
    pubsubTopic: Type.String({
      default: "envelope-ingress",
      minLength: 1,
      description: "Pub/Sub ingress topic (its subscription is `<topic>-router`, dead letters `<topic>-dead`).",
    }),
    pubsubSignalTopic: Type.String({ default: "push-notifications", minLength: 1, description: "Pub/Sub topic of broadcast signals." }),
    firestoreEndpoint: Type.Optional(Type.String({ minLength: 1, description: "host:port of the Firestore emulator; unset for Google Cloud." })),
    transporter: Type.Optional(
      Type.String({ minLength: 1, description: "Moleculer transporter joining the nodes (e.g. `nats://127.0.0.1:4222`); unset: a standalone node." }),
    ),
    namespace: Type.String({ default: "routing", pattern: "^[A-Za-z0-9_-]+$", description: "Moleculer namespace: nodes join only their own namespace." }),
    logLevel: Type.Union(
      ["fatal", "error", "warn", "info", "debug", "trace"].map((l) => Type.Literal(l)),
      { default: "info", description: "Log level." },
    ),
    logFormat: Type.Union([Type.Literal("auto"), Type.Literal("json"), Type.Literal("pretty")], {
      default: "auto",
      description: "Log format: `auto` is human-readable lines (pino-pretty) when stdout is a terminal and JSON lines otherwise; `json` or `pretty` force one.",
    }),
    // push (issue 6)
    pushCollapseSeconds: Type.Integer({
      minimum: 0,
      maximum: 86_400,
      default: 60,
      description: "At most one push per recipient in this window while an earlier pushed message is still unread. 0 turns collapsing off.",
    }),
    pushMaxAttempts: Type.Integer({
      minimum: 1,
      maximum: 100,
      default: 5,
      description: "Sends of a push that keeps failing retryably (provider 5xx, 429, network) before it is dead-lettered.",
    }),
    pushRetryBaseMs: Type.Integer({
      minimum: 1,
      maximum: 60_000,
      default: 1000,
      description: "First retry delay of a failed push; doubles per attempt, times a random 1..2 (jitter), max 30 s; or the provider's Retry-After if longer.",
    }),
    pushConcurrency: Type.Integer({
      minimum: 1,
      maximum: 1024,
      default: 8,
      description: "Push provider requests in flight at once per node (a batch is 8 times this).",
    }),
    fcmServiceAccountFile: Type.Optional(
      Type.String({ minLength: 1, description: "Firebase service-account JSON file (FCM HTTP v1). Unset: FCM pushes are off." }),
    ),
    fcmEndpoint: Type.Optional(
      Type.String({
        pattern: "^https://",
        description: "For testing against a local stand-in: every FCM request (OAuth token exchange included) goes to this https origin.",
      }),
    ),
    apnsKeyFile: Type.Optional(
      Type.String({ minLength: 1, description: "APNs token-auth key (.p8). APNs pushes are off unless this, the key id, team id and topic are all set." }),
    ),
    apnsKeyId: Type.Optional(Type.String({ minLength: 1, description: "APNs key id (the .p8 key's 10-character id)." })),
    apnsTeamId: Type.Optional(Type.String({ minLength: 1, description: "Apple developer team id." })),
    apnsTopic: Type.Optional(Type.String({ minLength: 1, description: "APNs topic: the app's bundle id." })),
    apnsProduction: Type.Boolean({ default: false, description: "Use the production APNs endpoint (false: sandbox)." }),
    apnsHost: Type.Optional(Type.String({ minLength: 1, description: "For testing against a local stand-in: APNs host instead of Apple's." })),
    apnsPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "For testing against a local stand-in: APNs port (default 443)." })),
    // web push (issue 17)
    vapidPublicKey: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9_-]{80,100}$",
        description:
          "VAPID public key (uncompressed P-256, base64url) for Web Push; give it to browsers as `applicationServerKey`. With the private key unset too, the embedded default makes a dev pair in the data dir.",
      }),
    ),
    vapidPrivateKey: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9_-]{40,50}$",
        description: "VAPID private key (base64url). Web Push is off unless both keys are set (or the dev pair is in use).",
      }),
    ),
    vapidSubject: Type.String({
      default: "mailto:routing@localhost.invalid",
      pattern: "^(mailto:|https://)",
      description: "VAPID `sub`: a mailto: or https: contact for push services; set a real one in production.",
    }),
    // demo (issue 17)
    demo: Type.Optional(
      Type.Boolean({
        description:
          "Serve the end-to-end-encrypted chat demo at /demo (and its dev token route). Default: on in the embedded default with the dev JWT secret, off otherwise.",
      }),
    ),
    // mqtt (issue 4)
    mqttUrl: Type.Optional(
      Type.String({
        pattern: "^(mqtts?|tcp|ssl|wss?)://",
        description:
          "External MQTT broker, e.g. `mqtt://routing:secret@broker:1883`. Set: no embedded broker; this process joins the ingest topic's shared subscription and publishes deliveries to that broker (docs/mqtt.md).",
      }),
    ),
    mqttIngestTopic: Type.String({
      default: "envelopes/send",
      pattern: "^[^$#+{}\\s][^#+{}\\s]*$",
      description: "Topic clients publish envelopes to. With ROUTING_MQTT_URL the sender's URN is one more level: `<topic>/<urn>`.",
    }),
    mqttReceiveTopic: Type.String({
      default: "clients/{urn}/receive",
      pattern: "^([^$#+{}\\s][^#+{}\\s]*/)?\\{urn\\}(/[^#+{}\\s]+)?$",
      description: "Topic a client subscribes to for its frames; `{urn}` (one whole level) is its identity.",
    }),
    mqttAckTopic: Type.String({
      default: "clients/{urn}/ack",
      pattern: "^([^$#+{}\\s][^#+{}\\s]*/)?\\{urn\\}(/[^#+{}\\s]+)?$",
      description: 'Topic a client publishes `{"messageIds": [...]}` to; `{urn}` as for the receive topic.',
    }),
    mqttShareGroup: Type.String({
      default: "routing",
      pattern: "^[A-Za-z0-9_-]+$",
      description: "Shared-subscription group (`$share/<group>/...`) of the processes consuming an external broker's ingest and ack topics.",
    }),
    mqttWsPath: Type.String({
      default: "/mqtt",
      pattern: "^/[A-Za-z0-9/_.-]*$",
      description: "Path of MQTT over WebSocket on the HTTP port (embedded broker only).",
    }),
    // limits and overload (issue 14; docs/limits.md). 0 switches a limit off.
    sendRatePerSecond: Type.Integer({
      minimum: 0,
      default: 100,
      description:
        "Sustained sends per identity, summed over HTTP, WebSocket and MQTT, on every node of a cluster together (Redis holds the count when the cluster has Redis). 0: no rate limit.",
    }),
    sendBurst: Type.Integer({
      minimum: 0,
      default: 1000,
      description: "Sends one identity may make at once above ROUTING_SEND_RATE_PER_SECOND; refilled over 10 x burst / rate seconds.",
    }),
    maxConnectionsPerIdentity: Type.Integer({
      minimum: 0,
      default: 50,
      description: "Live WebSocket + MQTT sessions of one identity across the cluster; one more is refused (429 before the 101, CONNACK refused). 0: no limit.",
    }),
    ingressMaxPending: Type.Integer({
      minimum: 0,
      default: 4096,
      description:
        "Accepted messages not yet routed (bus backlog plus publishes under way); past it sends get 503 OVERLOADED until it drains. Bounds memory: at most this many envelopes are held. 0: no bound.",
    }),
    httpHeaderTimeoutMs: Type.Integer({
      minimum: 0,
      default: 10_000,
      description:
        "Time a connection has to send a request's headers (even while they trickle in); then it is dropped. `ws` engine only: `uws` has uWebSockets' own fixed 10 s. 0: no timeout.",
    }),
    httpBodyTimeoutMs: Type.Integer({
      minimum: 0,
      default: 10_000,
      description:
        "Time a request has to send its whole body once its headers arrived; a slower body is answered 408 and the connection dropped. 0: no timeout.",
    }),
    maxUnauthenticatedSockets: Type.Integer({
      minimum: 0,
      default: 1024,
      description:
        "Requests still being read, WebSocket upgrades being decided and MQTT connections before their CONNACK, at once; one more is refused (503 OVERLOADED, or the connection closed). 0: no cap.",
    }),
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
