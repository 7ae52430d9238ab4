import net from "node:net";
import type { Duplex } from "node:stream";
import { CLOSE } from "../core/close-codes.ts";
import { listenServer } from "../platform/ports.ts";
import type { BinaryStreamRoute } from "../gateway/engine.ts";
import { packetSizeGuard } from "./packet-limit.ts";
import { binarySocketStream } from "./ws-stream.ts";

/** Where the listeners hand MQTT byte streams. */
export interface ConnectionSink {
  /** False until the broker runs: connections are then closed at once. */
  ready(): boolean;
  /** Hands a connection to the broker. `buffered` reads the bytes waiting below the broker. */
  handle(conn: Duplex, buffered: () => number): void;
  /** Largest packet (remaining length) a connection may declare. */
  readonly packetLimit: number;
  /** A connection declared a bigger packet; it is being dropped. */
  tooLarge(declaredBytes: number): void;
}

/** How far a WebSocket peer may get ahead of the broker's reading. */
const MAX_UNREAD_WS_BYTES = 8 * 1024 * 1024;
/** mqtt, and mqttv3.1 for MQTT 3.1 clients (MQTT 3.1.1, 6.0). */
const WS_SUBPROTOCOLS = ["mqtt", "mqttv3.1"] as const;
/** RFC 6455: try again later. */
const TRY_AGAIN_LATER = 1013;

/** MQTT over TCP. */
export function createTcpListener(host: string, sink: ConnectionSink) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (!sink.ready()) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    sink.handle(socket, () => socket.writableLength);
    // aedes reads in paused mode: this listener sees each chunk as aedes reads it, without resuming.
    socket.on(
      "data",
      packetSizeGuard(sink.packetLimit, (declared) => {
        sink.tooLarge(declared);
        socket.destroy();
      }),
    );
  });
  return {
    /** Resolves the bound port; rejects with EADDRINUSE when it is taken. */
    listen(port: number): Promise<number> {
      return listenServer(server, host, port);
    },
    /** Stops listening; resolves once every connection is gone (`dropAll` ends the stragglers). */
    stopListening(): Promise<void> {
      return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
    /** Connections that are not (or not yet) broker clients, e.g. still before CONNECT. */
    dropAll(): void {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** MQTT over WebSocket: the gateway engine's binary route at `path`. */
export function mqttWebSocketRoute(path: string, sink: ConnectionSink): BinaryStreamRoute {
  return {
    path,
    subprotocols: WS_SUBPROTOCOLS,
    // One MQTT packet per frame is what clients send; a packet may also span frames (the guard sees those).
    maxFrameBytes: sink.packetLimit + 8,
    open(socket) {
      const over = binarySocketStream(socket, MAX_UNREAD_WS_BYTES);
      if (!sink.ready()) {
        socket.close(TRY_AGAIN_LATER, "MQTT is not available yet; try again later");
        return over.listener;
      }
      sink.handle(over.stream, over.bufferedAmount);
      const guard = packetSizeGuard(sink.packetLimit, (declared) => {
        sink.tooLarge(declared);
        socket.close(CLOSE.MESSAGE_TOO_BIG, "MQTT packet too large");
      });
      return {
        message: (data) => {
          guard(data);
          over.listener.message(data);
        },
        drain: () => over.listener.drain(),
        closed: (code) => over.listener.closed(code),
      };
    },
  };
}
