/** The uWS engine's byte-stream WebSocket routes (MQTT over WebSocket; see BinaryStreamRoute). */
import type * as Uws from "uWebSockets.js";
import type { BinaryListener, BinarySocket, BinaryStreamRoute, UpgradeRequest } from "./engine.ts";
import { closeCode, closeReason, errorOutgoing, missingSubprotocol, reportAsync } from "./responses.ts";
import { copyHeaders, parseProtocols, writeResponse } from "./uws-http.ts";
import { MAX_BACKPRESSURE_BYTES, SEND_DROPPED, UNSUPPORTED_DATA, type UwsModule } from "./uws-native.ts";

/** A socket on a binary stream route (see BinaryStreamRoute). */
interface BinaryState {
  readonly request: UpgradeRequest;
  handle: BinarySocket | undefined;
  listener: BinaryListener | undefined;
  closed: boolean;
  notified: boolean;
  inCall: number;
}

export function serveStreams(uws: UwsModule, app: Uws.TemplatedApp, routes: readonly BinaryStreamRoute[]) {
  const openStreams = new Set<BinaryState>();

  const notifyBinaryClosed = (state: BinaryState, code: number): void => {
    if (state.notified || !state.listener) return;
    state.notified = true;
    state.listener.closed(code);
  };

  const binaryHandle = (state: BinaryState, ws: Uws.WebSocket<{ state: BinaryState }>): BinarySocket => ({
    send(data) {
      if (state.closed) return false;
      return ws.send(data, true) !== SEND_DROPPED;
    },
    bufferedAmount() {
      return state.closed ? 0 : ws.getBufferedAmount();
    },
    close(code, reason) {
      if (state.closed) return;
      state.inCall++;
      try {
        ws.end(closeCode(code), closeReason(reason));
      } finally {
        state.inCall--;
      }
    },
  });

  const streamRoute = (route: BinaryStreamRoute): void => {
    app.ws<{ state: BinaryState }>(route.path, {
      maxPayloadLength: route.maxFrameBytes,
      idleTimeout: 0,
      maxBackpressure: MAX_BACKPRESSURE_BYTES,
      closeOnBackpressureLimit: 0,
      sendPingsAutomatically: false,
      compression: uws.DISABLED,
      // Synchronous: there is no hook to wait for, so the request never outlives this call.
      upgrade: (res, req, context) => {
        const headers = copyHeaders(req);
        const request: UpgradeRequest = { path: req.getUrl(), query: new URLSearchParams(req.getQuery() ?? ""), headers };
        const protocol = parseProtocols(headers["sec-websocket-protocol"]).find((p) => route.subprotocols.includes(p));
        if (protocol === undefined) {
          writeResponse(res, "GET", errorOutgoing(missingSubprotocol(route)), true);
          return;
        }
        const state: BinaryState = { request, handle: undefined, listener: undefined, closed: false, notified: false, inCall: 0 };
        res.upgrade({ state }, headers["sec-websocket-key"] ?? "", protocol, headers["sec-websocket-extensions"] ?? "", context);
      },
      open: (ws) => {
        const state = ws.getUserData().state;
        state.handle = binaryHandle(state, ws);
        openStreams.add(state);
        try {
          state.listener = route.open(state.handle, state.request);
        } catch (err) {
          state.handle.close(1011, "internal error");
          reportAsync(err);
        }
      },
      message: (ws, message, isBinary) => {
        const state = ws.getUserData().state;
        if (!isBinary) {
          state.handle?.close(UNSUPPORTED_DATA, "binary frames only");
          return;
        }
        // Copy: the ArrayBuffer is neutered when this callback returns.
        state.listener?.message(Buffer.from(new Uint8Array(message)));
      },
      drain: (ws) => {
        const state = ws.getUserData().state;
        if (!state.closed) state.listener?.drain();
      },
      close: (ws, code) => {
        const state = ws.getUserData().state;
        state.closed = true;
        openStreams.delete(state);
        if (state.inCall > 0 || !state.listener) queueMicrotask(() => notifyBinaryClosed(state, code));
        else notifyBinaryClosed(state, code);
      },
    });
  };
  for (const route of routes) streamRoute(route);

  return {
    closeAll(code: number, reason: string): void {
      for (const state of [...openStreams]) state.handle?.close(code, reason);
    },
  };
}
