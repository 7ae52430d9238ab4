/**
 * The `ws` engine's socket bookkeeping: the handle the gateway gets for each WebSocket (on
 * `wsPath`, and on byte-stream routes), and the ws events turned into the listener's calls.
 */
import type { Duplex } from "node:stream";
import { WebSocket, type RawData } from "ws";
import type { BinaryListener, BinarySocket, BinaryStreamRoute, EngineOptions, SocketHandle, SocketListener, UpgradeRequest } from "./engine.ts";
import { closeCode, closeReason, reportAsync } from "./responses.ts";

/** Close code for a text frame on a binary stream route. */
const UNSUPPORTED_DATA = 1003;

export function openSocket<C>(options: EngineOptions<C>, ws: WebSocket, socket: Duplex, context: C): void {
  let listener: SocketListener | undefined;
  let notified = false;
  const handle: SocketHandle = {
    send(text) {
      if (ws.readyState !== WebSocket.OPEN) return false;
      ws.send(text);
      return true;
    },
    bufferedAmount() {
      return ws.bufferedAmount;
    },
    ping() {
      if (ws.readyState === WebSocket.OPEN) ws.ping();
    },
    close(code, reason) {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.close(closeCode(code), closeReason(reason));
    },
  };
  ws.on("message", (data: RawData, isBinary: boolean) => listener?.message(isBinary ? null : rawText(data)));
  ws.on("pong", () => listener?.pong());
  // ws writes frames straight to the socket (no compression), so the socket's drain is ours.
  socket.on("drain", () => {
    if (ws.readyState === WebSocket.OPEN) listener?.drain();
  });
  ws.on("error", (err: Error & { code?: string }) => {
    // Protocol errors (too big, invalid UTF-8): ws closes the socket and emits 'close' next.
    if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") options.onRefused?.("frame", options.wsPath);
  });
  ws.on("close", (code: number) => {
    if (notified || !listener) return;
    notified = true;
    listener.closed(code);
  });
  try {
    listener = options.sockets.open(handle, context);
  } catch (err) {
    handle.close(1011, "internal error");
    reportAsync(err);
  }
}

export function openStream(ws: WebSocket, socket: Duplex, route: BinaryStreamRoute, request: UpgradeRequest): void {
  let listener: BinaryListener | undefined;
  let notified = false;
  const handle: BinarySocket = {
    send(data) {
      if (ws.readyState !== WebSocket.OPEN) return false;
      ws.send(data, { binary: true });
      return true;
    },
    bufferedAmount() {
      return ws.bufferedAmount;
    },
    close(code, reason) {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.close(closeCode(code), closeReason(reason));
    },
  };
  ws.on("message", (data: RawData, isBinary: boolean) => {
    if (!isBinary) handle.close(UNSUPPORTED_DATA, "binary frames only");
    else listener?.message(rawBytes(data));
  });
  socket.on("drain", () => {
    if (ws.readyState === WebSocket.OPEN) listener?.drain();
  });
  ws.on("error", () => {
    // Protocol errors (too big): ws closes the socket and emits 'close' next.
  });
  ws.on("close", (code: number) => {
    if (notified || !listener) return;
    notified = true;
    // ws may emit 'close' synchronously inside handle.close(): never re-enter the listener there.
    queueMicrotask(() => listener?.closed(code));
  });
  try {
    listener = route.open(handle, request);
  } catch (err) {
    handle.close(1011, "internal error");
    reportAsync(err);
  }
}

function rawBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data).toString("utf8");
}
