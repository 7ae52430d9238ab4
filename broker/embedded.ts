import type { Duplex } from "node:stream";
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from "aedes";
import type { Principal, TokenVerifier } from "../auth/verifier.ts";
import { CLOSE } from "../core/close-codes.ts";
import { asRoutingError, RoutingError, type ErrorCode } from "../core/errors.ts";
import type { ConnectionSlot, ConnectionLimiter } from "../limits/index.ts";
import type { DeliveryMode, Session, SessionHost } from "../gateway/sessions.ts";
import { asConnectRefusal, CONNACK, connectRefusal, deliveryModeOf, verifyConnect } from "./connect-auth.ts";
import type { HoldPolicy, MqttIngest, PublishOutcome } from "./ingest.ts";
import { createTcpListener, mqttWebSocketRoute, type ConnectionSink } from "./listeners.ts";
import type { MqttLog } from "./log.ts";
import { createMqttTransport } from "./session-transport.ts";
import { answerMqtt5Moved, refuseIfMoved } from "./moved.ts";
import type { Placement } from "../gateway/moved.ts";
import type { MqttTopics } from "./topics.ts";

export interface EmbeddedBrokerOptions {
  readonly instanceId: string;
  readonly host: string;
  readonly wsPath: string;
  readonly maxEnvelopeBytes: number;
  /** Time a new connection has to send CONNECT. */
  readonly connectTimeoutMs: number;
  readonly topics: MqttTopics;
  readonly verifier: TokenVerifier;
  readonly ingest: MqttIngest;
  readonly sessions: SessionHost;
  readonly log: MqttLog;
  /** Per-identity connection limit (issue 14): over it, CONNACK 5 (not authorized). */
  readonly connections?: ConnectionLimiter;
  /** `sharded` delivery (issue 15): a client whose shard another node owns is refused (broker/moved.ts). */
  readonly placement?: Placement;
}

interface ClientState {
  readonly principal: Principal;
  /** This connection's place in its identity's connection limit; released when it ends. */
  readonly slot: ConnectionSlot | undefined;
  readonly mode: DeliveryMode;
  /** Exists while the client is subscribed to its receive topic. */
  session: Session | undefined;
  keepaliveExpired: boolean;
}

/** Room for the topic and packet id on top of the envelope limit; a bigger packet drops the connection. */
const PACKET_HEADROOM_BYTES = 64 * 1024;
/** How long close() lets publishes being accepted finish (their PUBACK) before disconnecting. */
const INFLIGHT_GRACE_MS = 2_000;
const EMPTY = Buffer.alloc(0);

function sessionOver(session: Session | undefined): boolean {
  return session === undefined || session.actor.getSnapshot().status === "done";
}

/** Resolves true once the session is online (presence written), false if it ended first. */
function online(session: Session): Promise<boolean> {
  const settled = (snapshot: ReturnType<Session["actor"]["getSnapshot"]>): boolean | undefined =>
    snapshot.matches("online") ? true : snapshot.status === "done" ? false : undefined;
  const now = settled(session.actor.getSnapshot());
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve) => {
    const subscription = session.actor.subscribe((snapshot) => {
      const result = settled(snapshot);
      if (result === undefined) return;
      subscription.unsubscribe();
      resolve(result);
    });
  });
}

/**
 * The embedded MQTT broker (aedes): TCP on the MQTT port and MQTT over WebSocket on the gateway's
 * port. Its hooks are the whole policy:
 * - CONNECT: the JWT in the password (connect-auth.ts); sessions are always clean (the mailbox,
 *   not the broker, keeps what a client has not fetched), and a client id held by one identity
 *   cannot be taken over by another (CONNACK 2).
 * - SUBSCRIBE: only one's own receive topic (else SUBACK 0x80). Granting it opens the session
 *   actor, and the SUBACK waits until the session is online, so anything sent to the client after
 *   its SUBACK reaches it. UNSUBSCRIBE (or the connection ending) ends the session.
 * - PUBLISH: only the ingest topic and one's own ack topic; anything else drops the connection
 *   (aedes' only refusal in 3.1.1). The PUBACK is sent when authorizePublish calls back, which is
 *   after the bus (or mailbox) made the publish durable; such publishes are never forwarded and
 *   their payload is released at once.
 */
export function createEmbeddedBroker(options: EmbeddedBrokerOptions) {
  const { topics, log } = options;
  const states = new WeakMap<Client, ClientState>();
  /** Client id -> the live client holding it. */
  const holders = new Map<string, Client>();
  /** Per connection: bytes waiting below aedes (socket, or stream plus WebSocket buffers). */
  const buffers = new WeakMap<Duplex, () => number>();
  const inflight = new Set<Promise<void>>();
  let accepting = true;
  let started = false;

  function connectionBuffered(conn: Client["conn"]): number {
    return buffers.get(conn)?.() ?? conn.writableLength;
  }

  // ---- connect ----------------------------------------------------------------------------------

  async function authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    if (!accepting) throw connectRefusal(CONNACK.SERVER_UNAVAILABLE, "SHUTTING_DOWN");
    const principal = await verifyConnect(options.verifier, password);
    refuseIfMoved(options.placement, principal.identity);
    const holder = holders.get(client.id);
    if (holder !== undefined && holder !== client && !holder.closed && states.get(holder)?.principal.identity !== principal.identity) {
      throw connectRefusal(CONNACK.IDENTIFIER_REJECTED, "client id in use by another identity");
    }
    const slot = await acquireSlot(principal);
    // The connection may have ended while the slot was being taken: nothing would release it then.
    if (client.closed || client.conn.destroyed) {
      slot?.release();
      throw connectRefusal(CONNACK.SERVER_UNAVAILABLE, "connection ended during CONNECT");
    }
    holders.set(client.id, client);
    states.set(client, { principal, slot, mode: deliveryModeOf(username), session: undefined, keepaliveExpired: false });
  }

  /** Over the identity's connection limit: CONNACK 5 (MQTT 3.1.1 has no quota code; MQTT 5 would say 0x97). */
  async function acquireSlot(principal: Principal): Promise<ConnectionSlot | undefined> {
    if (options.connections === undefined) return undefined;
    try {
      return await options.connections.acquire(principal.identity);
    } catch (err) {
      const error = asRoutingError(err);
      throw connectRefusal(error.code === "TOO_MANY_CONNECTIONS" ? CONNACK.NOT_AUTHORIZED : CONNACK.SERVER_UNAVAILABLE, error.code);
    }
  }

  function connectionGone(client: Client): void {
    if (client.id !== null && holders.get(client.id) === client) holders.delete(client.id);
    const state = states.get(client);
    state?.slot?.release();
    if (state === undefined || sessionOver(state.session)) return;
    const code = state.keepaliveExpired ? CLOSE.HEARTBEAT_TIMEOUT : CLOSE.NORMAL;
    state.session?.actor.send({ type: "session.socket.closed", code });
  }

  // ---- subscribe: sessions ----------------------------------------------------------------------

  function openSession(client: Client, state: ClientState): Promise<boolean> {
    const transport = createMqttTransport({
      client,
      topic: topics.receive(state.principal.identity),
      connectionBuffered: () => connectionBuffered(client.conn),
      close: (code, reason) => {
        log.info({ sessionId: session.id, code, reason }, "mqtt session ended by the server: disconnecting");
        client.close();
      },
    });
    const session = options.sessions.open(transport, "mqtt", state.mode, state.principal);
    transport.attach(session);
    state.session = session;
    return online(session);
  }

  function authorizeSubscribe(client: Client, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void): void {
    const state = states.get(client);
    if (state === undefined || sub.topic !== topics.receive(state.principal.identity)) {
      log.info({ code: "FORBIDDEN", topic: sub.topic }, "mqtt subscribe refused");
      done(null, null);
      return;
    }
    // Deliveries are QoS 1; a QoS 0 subscription gets them at QoS 0.
    const granted: Subscription = { ...sub, qos: sub.qos === 0 ? 0 : 1 };
    if (!sessionOver(state.session)) {
      done(null, granted);
      return;
    }
    void openSession(client, state).then((ok) => done(null, ok ? granted : null));
  }

  function unsubscribed(unsubscriptions: string[], client: Client): void {
    const state = states.get(client);
    if (state === undefined || sessionOver(state.session) || !unsubscriptions.includes(topics.receive(state.principal.identity))) return;
    // The client stays connected; only its session (presence, deliveries) ends.
    state.session?.actor.send({ type: "session.socket.closed", code: CLOSE.NORMAL });
  }

  // ---- publish ----------------------------------------------------------------------------------

  /** The payload for the ingest path; the packet aedes keeps holds none of it. */
  function takePayload(packet: PublishPacket): Buffer {
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload, "utf8") : packet.payload;
    packet.payload = EMPTY;
    return payload;
  }

  function settle(state: ClientState, outcome: Promise<PublishOutcome>, done: (err?: Error | null) => void, packet?: PublishPacket): void {
    const work = outcome.then(
      (result) => {
        if (result.kind !== "accepted" && state.session?.isOnline()) state.session.send(result.frame);
        // aedes acknowledges by the packet's QoS once this is done: at QoS 0 it sends no PUBACK.
        if (result.kind === "withheld" && packet !== undefined) packet.qos = 0;
        done(null);
      },
      (err: unknown) => done(err instanceof Error ? err : new Error("publish not accepted")),
    );
    inflight.add(work);
    void work.finally(() => inflight.delete(work));
  }

  const HELD = new Set<ErrorCode>(["RATE_LIMITED", "OVERLOADED"]);
  function holdWhile(client: Client): HoldPolicy {
    return { codes: HELD, while: () => accepting && !client.closed };
  }

  function authorizePublish(client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const state = client === null ? undefined : states.get(client);
    // Wills (published after the connection ended) and anything without a live identity.
    if (client === null || state === undefined || client.closed) return done(new Error("no live connection to publish for"));
    if (!accepting) return done(new RoutingError("SHUTTING_DOWN", "this instance is shutting down; reconnect elsewhere"));
    packet.retain = false;
    const identity = state.principal.identity;
    // Over the sender's rate or the ingress bound: the PUBACK is withheld until accepted, and as
    // aedes reads a connection's next packets only after this one is done, the sender is throttled.
    if (packet.topic === topics.ingest) return settle(state, options.ingest.envelope(takePayload(packet), identity, holdWhile(client)), done, packet);
    if (packet.topic === topics.ack(identity)) return settle(state, options.ingest.ack(takePayload(packet), identity), done);
    log.info({ code: "FORBIDDEN", topic: packet.topic }, "mqtt publish refused: disconnecting");
    done(new RoutingError("FORBIDDEN", "publishing to this topic is not allowed"));
  }

  /** Ingest and ack publishes are consumed here, never forwarded; deliveries (receive topics) pass. */
  function authorizeForward(_client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    return packet.topic === topics.ingest || topics.ackOwner(packet.topic) !== undefined ? null : packet;
  }

  // ---- broker and listeners ---------------------------------------------------------------------

  const aedes = new Aedes({
    id: options.instanceId,
    connectTimeout: options.connectTimeoutMs,
    preConnect: (client, packet, done) => {
      packet.clean = true;
      if (options.placement?.shards === undefined) return done(null, true);
      answerMqtt5Moved(options.placement, options.verifier, client, packet).then(
        (moved) => (moved ? done(new Error("MOVED"), false) : done(null, true)),
        () => done(null, true),
      );
    },
    authenticate: (client, username, password, done) => {
      authenticate(client, username, password).then(
        () => done(null, true),
        (err: unknown) => {
          const refusal = asConnectRefusal(err);
          // The reason is an error code, never the token.
          log.info({ returnCode: refusal.returnCode, reason: refusal.message }, "mqtt connect refused");
          done(refusal, false);
        },
      );
    },
    authorizeSubscribe,
    authorizePublish,
    authorizeForward,
  });
  aedes.on("unsubscribe", unsubscribed);
  aedes.on("keepaliveTimeout", (client) => {
    const state = states.get(client);
    if (state !== undefined) state.keepaliveExpired = true;
  });
  // aedes errors can carry the offending packet (payload included): log the message only.
  aedes.on("clientError", (_client, err) => log.debug?.({ reason: err.message }, "mqtt client error"));

  const packetLimit = options.maxEnvelopeBytes + PACKET_HEADROOM_BYTES;
  const sink: ConnectionSink = {
    ready: () => started,
    handle(conn, buffered) {
      buffers.set(conn, buffered);
      const client = aedes.handle(conn);
      conn.once("close", () => connectionGone(client));
    },
    packetLimit,
    tooLarge: (declared) => log.warn({ declaredBytes: declared, limitBytes: packetLimit }, "mqtt packet over the size limit: connection dropped"),
  };
  const tcp = createTcpListener(options.host, sink);

  return {
    /** The MQTT-over-WebSocket route for the gateway engine. */
    wsRoute: mqttWebSocketRoute(options.wsPath, sink),
    /** Starts aedes; call before listening (the WebSocket route refuses until then). */
    async start(): Promise<void> {
      await aedes.listen();
      started = true;
    },
    /** Binds the TCP listener; resolves the bound port, rejects with EADDRINUSE when taken. */
    listen: (port: number): Promise<number> => tcp.listen(port),
    /** New CONNECTs get 3 (server unavailable); publishes disconnect (the client retries elsewhere). */
    stopAccepting(): void {
      accepting = false;
    },
    /** Stops listening, lets publishes being accepted get their PUBACK, disconnects everyone, closes aedes. */
    async close(): Promise<void> {
      accepting = false;
      const stopped = tcp.stopListening();
      await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, INFLIGHT_GRACE_MS).unref())]);
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      // Connections that never completed CONNECT are not aedes clients yet.
      tcp.dropAll();
      await stopped;
    },
  };
}

export type EmbeddedBroker = ReturnType<typeof createEmbeddedBroker>;
