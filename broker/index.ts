import type { Mailbox } from "../backends/mailbox.ts";
import type { TokenVerifier } from "../auth/verifier.ts";
import type { BinaryStreamRoute } from "../gateway/engine.ts";
import type { SessionHost } from "../gateway/sessions.ts";
import type { Ingress } from "../routing/ingress.ts";
import { listenWithFallback } from "../platform/ports.ts";
import { createEmbeddedBroker } from "./embedded.ts";
import { createExternalLink } from "./external.ts";
import { withExternalDelivery, type RouterReach } from "./external-routing.ts";
import { createMqttIngest } from "./ingest.ts";
import type { ConnectionLimiter } from "../limits/index.ts";
import type { Placement } from "../gateway/moved.ts";
import type { MqttLog } from "./log.ts";
import { mqttTopics, type MqttTopicSettings } from "./topics.ts";

export type { RouterReach } from "./external-routing.ts";
export type { MqttLog } from "./log.ts";

export interface MqttOptions {
  readonly instanceId: string;
  /** Embedded broker: where the TCP listener binds, and the port rule of ROUTING_MQTT_PORT. */
  readonly host: string;
  readonly port: number;
  readonly portExplicit: boolean;
  /** External broker URL; set: no embedded broker. */
  readonly url: string | undefined;
  readonly topics: MqttTopicSettings;
  readonly shareGroup: string;
  readonly wsPath: string;
  readonly maxEnvelopeBytes: number;
  /** Embedded: time to send CONNECT. External: time to connect to the broker at start. */
  readonly connectTimeoutMs: number;
  readonly verifier: TokenVerifier;
  readonly ingress: Ingress;
  readonly mailbox: Mailbox;
  readonly sessions: SessionHost;
  readonly log: MqttLog;
  /** Per-identity connection limit (issue 14), shared with WebSocket sessions. */
  readonly connections?: ConnectionLimiter;
  /** `sharded` delivery: clients belong on their shard's owner (broker/moved.ts). */
  readonly placement?: Placement;
}

export interface MqttRuntime {
  readonly mode: "embedded" | "external";
  /** WebSocket routes for the gateway engine: MQTT over WebSocket (embedded), none (external). */
  readonly streams: readonly BinaryStreamRoute[];
  /** The router's presence and signals: as they are (embedded) or also publishing to the broker (external). */
  reach(inner: RouterReach): RouterReach;
  /** Binds the MQTT port (embedded) or connects and joins the share group (external); resolves the ready-line part. */
  start(): Promise<string>;
  /** New connections and publishes are refused from now on (shutdown). */
  stopAccepting(): void;
  /** Disconnects every client and closes the broker, or leaves the external broker. */
  close(): Promise<void>;
}

/**
 * MQTT for a routing node: the embedded broker, or (ROUTING_MQTT_URL) this node as a member of the
 * external broker's share group that also publishes deliveries there. See the README's MQTT section.
 */
export function createMqtt(options: MqttOptions): MqttRuntime {
  const topics = mqttTopics(options.topics);
  const ingest = createMqttIngest({ ingress: options.ingress, mailbox: options.mailbox, log: options.log });

  if (options.url !== undefined) {
    const link = createExternalLink({
      url: options.url,
      clientId: `routing-${options.instanceId}`,
      topics,
      shareGroup: options.shareGroup,
      ingest,
      connectTimeoutMs: options.connectTimeoutMs,
      log: options.log,
    });
    return {
      mode: "external",
      streams: [],
      reach: (inner) => withExternalDelivery(inner, link.publish),
      async start() {
        await link.start();
        return "mqtt=external";
      },
      stopAccepting: () => {},
      close: () => link.close(),
    };
  }

  const broker = createEmbeddedBroker({
    instanceId: options.instanceId,
    host: options.host,
    wsPath: options.wsPath,
    maxEnvelopeBytes: options.maxEnvelopeBytes,
    connectTimeoutMs: options.connectTimeoutMs,
    topics,
    verifier: options.verifier,
    ingest,
    sessions: options.sessions,
    log: options.log,
    connections: options.connections,
    placement: options.placement,
  });
  return {
    mode: "embedded",
    streams: [broker.wsRoute],
    reach: (inner) => inner,
    async start() {
      await broker.start();
      const portLog = { info: (msg: string) => options.log.info({}, msg) };
      const port = await listenWithFallback("mqtt", (p) => broker.listen(p), options.port, options.portExplicit, portLog);
      return `mqtt=${port}`;
    },
    stopAccepting: () => broker.stopAccepting(),
    close: () => broker.close(),
  };
}
