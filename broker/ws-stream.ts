import { Duplex } from "node:stream";
import type { BinaryListener, BinarySocket } from "../gateway/engine.ts";

/** Past this many bytes in the engine's send buffer, writes wait for its drain (aedes then waits too). */
const SEND_HIGH_WATER = 64 * 1024;
/** Close code when the peer sends faster than the broker reads (RFC 6455: policy violation). */
const POLICY_VIOLATION = 1008;

export interface SocketStream {
  /** What `aedes.handle()` reads MQTT from and writes MQTT to. */
  readonly stream: Duplex;
  /** Give this to the engine: it feeds the stream. */
  readonly listener: BinaryListener;
  /** Bytes written but not yet handed to the kernel: the stream's buffer plus the engine's. */
  bufferedAmount(): number;
}

/**
 * A Duplex over a binary WebSocket (MQTT over WebSocket): frames in, bytes out; each write (or
 * corked batch of writes: mqtt-packet corks one packet's pieces) goes out as one binary frame.
 *
 * Reading: neither engine can pause a WebSocket, so frames are pushed as they come; a peer that
 * gets more than `maxUnreadBytes` ahead of the broker is closed with 1008 instead of buffered
 * without bound. Writing: a write completes once the engine has it below SEND_HIGH_WATER, which
 * gives aedes real backpressure. Destroying the stream closes the socket (1000); the socket going
 * away ends and destroys the stream.
 */
export function binarySocketStream(socket: BinarySocket, maxUnreadBytes: number): SocketStream {
  let waitingWrite: ((err?: Error) => void) | undefined;
  let socketGone = false;

  const send = (data: Buffer, done: (err?: Error) => void): void => {
    if (data.length === 0) return done();
    if (!socket.send(data)) return done(new Error("the WebSocket is closed"));
    if (socket.bufferedAmount() <= SEND_HIGH_WATER) return done();
    waitingWrite = done;
  };

  const stream = new Duplex({
    read() {
      // Frames are pushed as they arrive (see above).
    },
    write(chunk: Buffer, _encoding, done) {
      send(chunk, done);
    },
    writev(chunks, done) {
      send(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), done);
    },
    final(done) {
      socket.close(1000, "");
      done();
    },
    destroy(err, done) {
      if (!socketGone) socket.close(1000, "");
      const waiting = waitingWrite;
      waitingWrite = undefined;
      waiting?.(new Error("the WebSocket is closed"));
      done(err);
    },
  });

  const listener: BinaryListener = {
    message(data) {
      if (stream.destroyed) return;
      if (stream.readableLength + data.length > maxUnreadBytes) {
        socket.close(POLICY_VIOLATION, "sending faster than the broker reads");
        return;
      }
      stream.push(data);
    },
    drain() {
      if (waitingWrite === undefined || socket.bufferedAmount() > SEND_HIGH_WATER) return;
      const waiting = waitingWrite;
      waitingWrite = undefined;
      waiting();
    },
    closed() {
      socketGone = true;
      stream.push(null);
      stream.destroy();
    },
  };

  return { stream, listener, bufferedAmount: () => stream.writableLength + socket.bufferedAmount() };
}
