/**
 * The uWS engine's WebSocket route (`wsPath`): the upgrade hook, the socket handles and their
 * bookkeeping. uWS rules: calling a method of a closed uWS WebSocket throws, so every handle method
 * checks the closed flag; no application code runs inside the `res.cork()` that completes an upgrade
 * (see `openUpgraded`): the socket's listener is opened only after that cork returned.
 */
import type * as Uws from "uWebSockets.js";
import { asRoutingError } from "../core/errors.ts";
import type { EngineOptions, SocketHandle, SocketListener, UpgradeDecision } from "./engine.ts";
import type { RequestGuard } from "./request-guard.ts";
import { closeCode, closeReason, errorOutgoing, normalizeOr500, reportAsync } from "./responses.ts";
import { copyHeaders, parseProtocols, writeResponse } from "./uws-http.ts";
import { MAX_BACKPRESSURE_BYTES, MESSAGE_TOO_BIG, uwsFrameCeiling, uwsIdleTimeoutSeconds, type UwsModule } from "./uws-native.ts";
import { queueFlush, type BatchedSocket } from "./uws-send-batch.ts";

interface SocketState<C> {
  /** The upgrade's context, until the listener opened with it (then undefined: not held per idle socket). */
  context: C | undefined;
  ws: Uws.WebSocket<UserData<C>> | undefined;
  handle: SocketHandle | undefined;
  listener: SocketListener | undefined;
  closed: boolean;
  notified: boolean;
  /** Depth of handle calls in progress: uWS runs the close handler synchronously inside end(). */
  inCall: number;
}

interface UserData<C> {
  readonly state: SocketState<C>;
}

/**
 * A WebSocket as the gateway sees it. A class, not an object of closures: one lives per idle
 * connection, and per-connection closures cost far more than their code suggests (README,
 * "Performance": idle connections).
 */
class UwsSocketHandle<C> implements SocketHandle, BatchedSocket {
  readonly #state: SocketState<C>;
  readonly #ws: Uws.WebSocket<UserData<C>>;
  /** Frames waiting for the batch (uws-send-batch.ts); undefined while none are. */
  #queued: string[] | undefined;
  #queuedBytes = 0;

  constructor(state: SocketState<C>, ws: Uws.WebSocket<UserData<C>>) {
    this.#state = state;
    this.#ws = ws;
  }

  send(text: string): boolean {
    if (this.#state.closed) return false;
    if (this.#queued === undefined) {
      this.#queued = [text];
      queueFlush(this);
    } else this.#queued.push(text);
    this.#queuedBytes += text.length;
    return true;
  }

  flushQueued(): void {
    const queued = this.#queued;
    this.#queued = undefined;
    this.#queuedBytes = 0;
    if (queued === undefined || this.#state.closed) return;
    const ws = this.#ws;
    // One syscall for the batch. A frame past uWS's 1 GiB backpressure ceiling is dropped by
    // uWS; the session's own send-buffer limit (bufferedAmount) closes the socket long before.
    if (queued.length === 1) ws.send(queued[0], false);
    else
      ws.cork(() => {
        for (const text of queued) ws.send(text, false);
      });
  }

  bufferedAmount(): number {
    return this.#state.closed ? 0 : this.#ws.getBufferedAmount() + this.#queuedBytes;
  }

  ping(): void {
    if (!this.#state.closed) this.#ws.ping();
  }

  close(code: number, reason: string): void {
    const state = this.#state;
    if (state.closed) return;
    // What was sent before the close goes out before it (e.g. an `error` frame).
    this.flushQueued();
    if (state.closed) return;
    state.inCall++;
    try {
      this.#ws.end(closeCode(code), closeReason(reason));
    } finally {
      state.inCall--;
    }
  }
}

/** Registers the WebSocket route; `closeAll` closes what is still open when the engine closes. */
export function serveSockets<C>(uws: UwsModule, app: Uws.TemplatedApp, options: EngineOptions<C>, guard: RequestGuard) {
  const maxBody = options.maxBodyBytes;
  const openSockets = new Set<SocketState<C>>();

  const notifyClosed = (state: SocketState<C>, code: number): void => {
    if (state.notified || !state.listener) return;
    state.notified = true;
    state.listener.closed(code);
  };

  /**
   * uWS `open` only records the socket here; `finish` (below) opens the listener once `res.upgrade()`
   * and the cork around it returned. Why: uWS 20.30's HttpResponse::cork(), after its callback,
   * decides whether to close "this HTTP response" by reading HttpResponseData::state at `this`. An
   * async upgrade reallocates the socket in place (realloc() shrinks it, same address) and frees the
   * tail where that state lived, so cork() reads freed heap: whatever a malloc() made inside the
   * callback wrote there. With the CONNECTION_CLOSE bit set (and RESPONSE_PENDING clear) it calls
   * shutdown() + close() on the new WebSocket right after the 101: no close frame, 1006 on both
   * sides. Session set-up (allocations, first-run JIT) inside `open` wrote there often enough to drop
   * about 1 connection in a few hundred, mostly early in the process' life. So nothing but this
   * builtin runs in that window: no JS to compile on the first connection, nothing that mallocs.
   */
  const upgraded: Array<Uws.WebSocket<UserData<C>>> = [];
  const recordUpgraded = upgraded.push.bind(upgraded) as (ws: Uws.WebSocket<UserData<C>>) => void;

  /** Opens the listener of a socket `res.upgrade()` just created (if it is still open). */
  const openUpgraded = (state: SocketState<C>): void => {
    const ws = upgraded.pop();
    upgraded.length = 0;
    // Closed inside the upgrade (close handler ran, no listener to tell), or never opened.
    if (ws === undefined || state.closed) return;
    state.ws = ws;
    state.handle = new UwsSocketHandle(state, ws);
    openSockets.add(state);
    const context = state.context as C;
    state.context = undefined;
    try {
      state.listener = options.sockets.open(state.handle, context);
    } catch (err) {
      state.handle.close(1011, "internal error");
      reportAsync(err);
    }
  };

  app.ws<UserData<C>>(options.wsPath, {
    // uWS drops a frame over maxPayloadLength without a close frame (the client sees 1006), so it
    // gets headroom and the cap is enforced in `message` with 1009. Past the headroom uWS still drops.
    maxPayloadLength: uwsFrameCeiling(maxBody),
    // The engine's own liveness, a backstop behind the sessions' heartbeat (which closes a silent
    // peer with 4000 first): uWS pings a socket idle this long and drops it if it stays silent.
    idleTimeout: uwsIdleTimeoutSeconds(options.idleTimeoutSeconds),
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    // The addon reads it as a boolean; the shipped typings say number.
    closeOnBackpressureLimit: 0,
    sendPingsAutomatically: options.idleTimeoutSeconds !== undefined,
    compression: uws.DISABLED,

    upgrade: (res, req, context) => {
      // Copy everything off the stack-allocated request before any await.
      const path = req.getUrl();
      const query = new URLSearchParams(req.getQuery() ?? "");
      const headers = copyHeaders(req);
      const key = headers["sec-websocket-key"] ?? "";
      const extensions = headers["sec-websocket-extensions"] ?? "";
      const offered = parseProtocols(headers["sec-websocket-protocol"]);
      let leave: () => void;
      try {
        leave = guard.enter();
      } catch (err) {
        writeResponse(res, "GET", errorOutgoing(asRoutingError(err)), true);
        return;
      }
      let done = false;
      res.onAborted(() => {
        done = true;
        leave();
      });
      const finish = (decision: UpgradeDecision<C>): void => {
        leave();
        if (done) return;
        done = true;
        if (decision.accept) {
          const protocol = decision.protocol !== undefined && offered.includes(decision.protocol) ? decision.protocol : "";
          const state: SocketState<C> = {
            context: decision.context,
            ws: undefined,
            handle: undefined,
            listener: undefined,
            closed: false,
            notified: false,
            inCall: 0,
          };
          // Inside uWS's parser (the hook settled in the microtask drain after this handler) the
          // socket is already corked and cork() only runs the callback; after an await it corks,
          // and then only uWS code may run until it returns (see `recordUpgraded`).
          res.cork(() => res.upgrade<UserData<C>>({ state }, key, protocol, extensions, context));
          openUpgraded(state);
        } else {
          const out = normalizeOr500(decision.response);
          res.cork(() => writeResponse(res, "GET", out, true));
        }
      };
      const fail = (err: unknown): void => {
        leave();
        if (done) return;
        done = true;
        const out = errorOutgoing(asRoutingError(err));
        res.cork(() => writeResponse(res, "GET", out, true));
      };
      Promise.resolve()
        .then(() => options.sockets.upgrade({ path, query, headers }))
        .then(finish, fail);
    },

    // Runs inside res.upgrade(): see `recordUpgraded`; the listener is opened by `openUpgraded`.
    open: recordUpgraded,

    message: (ws, message, isBinary) => {
      const state = ws.getUserData().state;
      if (message.byteLength > maxBody) {
        options.onRefused?.("frame", options.wsPath);
        state.handle?.close(MESSAGE_TOO_BIG, "message too big");
        return;
      }
      // Decoding copies: the ArrayBuffer is neutered when this callback returns.
      const text = isBinary ? null : Buffer.from(message).toString("utf8");
      state.listener?.message(text);
    },

    pong: (ws) => {
      ws.getUserData().state.listener?.pong();
    },

    drain: (ws) => {
      const state = ws.getUserData().state;
      if (!state.closed) state.listener?.drain();
    },

    close: (ws, code) => {
      const state = ws.getUserData().state;
      state.closed = true;
      openSockets.delete(state);
      // Never re-enter the listener from inside one of its own handle calls (or before open()
      // returned it): deliver on the next microtask instead.
      if (state.inCall > 0 || !state.listener) queueMicrotask(() => notifyClosed(state, code));
      else notifyClosed(state, code);
    },
  });

  return {
    closeAll(code: number, reason: string): void {
      for (const state of [...openSockets]) state.handle?.close(code, reason);
    },
  };
}
