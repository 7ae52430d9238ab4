import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import type { Urn } from "../core/urn.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { MqttIngest } from "./ingest.ts";
import type { MqttLog } from "./log.ts";
import type { MqttTopics } from "./topics.ts";

export interface ExternalLinkOptions {
  /** mqtt://user:password@host:port; never logged (credentials), only its host. */
  readonly url: string;
  /** Stable across restarts of one instance (ROUTING_INSTANCE_ID), so the broker can resume its session. */
  readonly clientId: string;
  readonly topics: MqttTopics;
  readonly shareGroup: string;
  readonly ingest: MqttIngest;
  readonly connectTimeoutMs: number;
  readonly log: MqttLog;
}

/**
 * How long the broker keeps the session of a member that vanished without a clean disconnect: its
 * unacknowledged (and, on some brokers, newly assigned) messages wait for it to come back that long.
 */
export const SESSION_EXPIRY_SECONDS = 300;
/** How long close() waits for publishes being ingested and for deliveries' acknowledgements. */
const CLOSE_GRACE_MS = 3_000;
const HOLD_OVERLOADED = new Set<ErrorCode>(["OVERLOADED"]);

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "(unparsable url)";
  }
}

function timeout(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * This process as a client of an external MQTT broker (MQTT 5, persistent session):
 * - a member of the shared subscriptions `$share/<group>/<ingest>/+` and `$share/<group>/<ack
 *   topic with +>`, so the processes of the group split the load: each envelope goes through
 *   `ingest.envelope(payload, <urn from the topic>)`, each ack through `ingest.ack`. The broker gets
 *   the PUBACK only once that is durable; a retryable failure withholds it and reconnects, so the
 *   broker redelivers (persistent session). A malformed publish is acknowledged and answered with
 *   an `error` frame on the sender's receive topic.
 * - the publisher of deliveries: `publish(urn, frame)` sends a frame to `urn`'s receive topic at
 *   QoS 1, while connected (a delivery while disconnected is dropped: signals are best effort, the
 *   mailbox keeps the message).
 */
export function createExternalLink(options: ExternalLinkOptions) {
  const { topics, log, ingest } = options;
  const host = hostOf(options.url);
  const filters = [topics.sharedIngestFilter(options.shareGroup), topics.sharedAckFilter(options.shareGroup)];
  const inflight = new Set<Promise<void>>();
  let client: MqttClient | undefined;
  let reconnecting = false;
  let dropped = 0;

  function publish(urn: Urn, frame: string): void {
    if (client === undefined || !client.connected) {
      dropped++;
      log.debug?.({ dropped }, "mqtt broker not connected: delivery dropped");
      return;
    }
    client.publish(topics.receive(urn), frame, { qos: 1 });
  }

  async function consume(packet: IPublishPacket): Promise<void> {
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload, "utf8") : packet.payload;
    const sender = topics.externalIngestOwner(packet.topic);
    const acker = sender === undefined ? topics.ackOwner(packet.topic) : undefined;
    const identity = sender ?? acker;
    if (identity === undefined) {
      log.info({ code: "INVALID_IDENTITY", topic: packet.topic, bytes: payload.length }, "mqtt publish without a usable identity level dropped");
      return;
    }
    // OVERLOADED: hold (the broker keeps the rest for this member meanwhile); RATE_LIMITED: an
    // `error` frame to the sender (holding would stall every sender sharing this member).
    const outcome =
      sender !== undefined
        ? await ingest.envelope(payload, identity, { codes: HOLD_OVERLOADED, while: () => client?.connected === true })
        : await ingest.ack(payload, identity);
    // The external broker acknowledged the client already: a withheld (MAILBOX_FULL) one is answered by its frame alone.
    if (outcome.kind !== "accepted") publish(identity, outcome.frame);
  }

  /** Drops the connection so the broker redelivers what was not acknowledged (the session persists). */
  function reconnectForRedelivery(): void {
    if (reconnecting || client === undefined) return;
    reconnecting = true;
    client.stream.destroy();
  }

  function handleMessage(packet: IPublishPacket, done: (err?: Error) => void): void {
    const work = consume(packet).then(
      () => done(),
      (err: unknown) => {
        done(err instanceof Error ? err : new Error("not accepted"));
        reconnectForRedelivery();
      },
    );
    inflight.add(work);
    void work.finally(() => inflight.delete(work));
  }

  return {
    publish,
    /** Connects, joins the shared subscriptions; rejects if either fails within the connect timeout. */
    async start(): Promise<void> {
      const connection = mqtt.connect(options.url, {
        protocolVersion: 5,
        clientId: options.clientId,
        clean: false,
        properties: { sessionExpiryInterval: SESSION_EXPIRY_SECONDS },
        reconnectPeriod: 1_000,
        connectTimeout: options.connectTimeoutMs,
        queueQoSZero: false,
      });
      client = connection;
      // mqtt.js acknowledges a QoS 1 message once this calls back without an error.
      connection.handleMessage = handleMessage;
      // Registered first: an 'error' without a listener would throw.
      connection.on("error", (err) => log.warn({ broker: host, reason: err.message }, "mqtt broker error"));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => fail(new Error(`no connection to the MQTT broker at ${host} within ${options.connectTimeoutMs} ms`)),
          options.connectTimeoutMs,
        );
        const fail = (err: Error): void => {
          clearTimeout(timer);
          connection.end(true);
          reject(new Error(`MQTT broker at ${host}: ${err.message}`));
        };
        connection.once("connect", () => {
          clearTimeout(timer);
          connection.off("error", fail);
          resolve();
        });
        connection.once("error", fail);
      });
      try {
        const granted = await connection.subscribeAsync(filters, { qos: 1 });
        const refused = granted.filter((g) => g.qos >= 0x80);
        if (refused.length > 0) throw new Error(`refused ${refused.map((g) => g.topic).join(", ")}`);
      } catch (err) {
        connection.end(true);
        throw new Error(`MQTT broker at ${host} did not grant the shared subscriptions: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      connection.on("connect", () => {
        reconnecting = false;
        log.info({ broker: host }, "mqtt broker connected");
      });
      connection.on("offline", () => log.warn({ broker: host }, "mqtt broker connection lost; reconnecting"));
      log.info({ broker: host, filters }, "mqtt bridge consuming");
    },
    connected: (): boolean => client?.connected === true,
    /**
     * Leaves the group first (the broker stops assigning this member messages), lets messages being
     * ingested finish, then disconnects with session expiry 0: the broker drops the session.
     */
    async close(): Promise<void> {
      const connection = client;
      if (connection === undefined) return;
      if (connection.connected) await Promise.race([connection.unsubscribeAsync(filters).catch(() => undefined), timeout(CLOSE_GRACE_MS)]);
      await Promise.race([Promise.allSettled([...inflight]), timeout(CLOSE_GRACE_MS)]);
      const ended = connection.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
      await Promise.race([ended, timeout(CLOSE_GRACE_MS)]);
      if (!connection.disconnected) await connection.endAsync(true);
    },
  };
}

export type ExternalLink = ReturnType<typeof createExternalLink>;
