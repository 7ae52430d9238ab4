import type { Client } from "aedes";
import type { Session, SessionTransport } from "../gateway/sessions.ts";

/** How often a draining MQTT session checks whether its deliveries have left (there is no drain event for the sum). */
const FLUSH_POLL_MS = 20;

export interface MqttTransportOptions {
  readonly client: Client;
  /** The client's receive topic: every frame is published there. */
  readonly topic: string;
  /** Bytes waiting in the connection below aedes (socket or WebSocket buffers). */
  readonly connectionBuffered: () => number;
  /** The session ends the connection (slow consumer, token expiry, shutdown, ...). */
  readonly close: (code: number, reason: string) => void;
}

export interface MqttTransport extends SessionTransport {
  /** Binds the session the host created over this transport (pongs and flush signals go to it). */
  attach(session: Session): void;
}

/**
 * A session transport over one aedes client: frames go out as QoS 1 PUBLISHes on the receive topic
 * (the client acknowledges each; sessions are clean, so nothing is resent after a reconnect: the
 * mailbox is the durable copy, and a client fetches after reconnecting).
 *
 * - bufferedAmount: bytes handed to aedes whose write has not completed (aedes completes a write
 *   once the connection took it below its high-water mark, else after its drain) plus what the
 *   connection still buffers; the session host's send-buffer limit applies to that.
 * - ping: answered at once. MQTT liveness is the client's keepalive, which aedes enforces (1.5x
 *   the keepalive the client announced); the session's WebSocket-style heartbeat must not close an
 *   MQTT session that is merely quiet.
 */
export function createMqttTransport(options: MqttTransportOptions): MqttTransport {
  let pending = 0;
  let session: Session | undefined;
  let poll: NodeJS.Timeout | undefined;

  const buffered = (): number => pending + options.connectionBuffered();

  return {
    send(text) {
      if (options.client.closed) return false;
      const payload = Buffer.from(text, "utf8");
      pending += payload.length;
      options.client.publish({ cmd: "publish", topic: options.topic, payload, qos: 1, retain: false, dup: false }, () => {
        pending -= payload.length;
      });
      return true;
    },
    bufferedAmount: buffered,
    ping() {
      queueMicrotask(() => session?.actor.send({ type: "session.pong" }));
    },
    close(code, reason) {
      options.close(code, reason);
    },
    attach(bound) {
      session = bound;
      bound.actor.subscribe((snapshot) => {
        if (snapshot.status === "done") {
          clearInterval(poll);
          return;
        }
        if (!snapshot.matches("draining") || poll !== undefined) return;
        poll = setInterval(() => {
          if (buffered() === 0) bound.actor.send({ type: "session.flushed" });
        }, FLUSH_POLL_MS);
        poll.unref();
      });
    },
  };
}
