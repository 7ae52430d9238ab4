/**
 * The `uws` engine: uWebSockets.js (native). The binary is loaded directly, never through the
 * package's `src/uws.js`, which silently falls back to a slow JS polyfill when the native load
 * fails; here a failed load is an error that names the file, the Node ABI and the way out.
 *
 * uWS rules this file follows:
 * - an HttpRequest is stack-allocated: everything needed is copied before the first await;
 * - an HttpResponse must get `onAborted` when not answered synchronously, and is never written
 *   after it aborted; writes after an await happen inside `res.cork()`;
 * - ArrayBuffers handed to callbacks are neutered on return: copied (body) or decoded (frames) at once;
 * - calling a method of a closed uWS WebSocket throws: every handle method checks the closed flag;
 * - no application code runs inside the `res.cork()` that completes an upgrade (see `finish` in the
 *   upgrade handler): the socket's listener is opened only after that cork returned.
 */
import { createRequire } from "node:module";
import { STATUS_CODES } from "node:http";
import net from "node:net";
import { dirname, join } from "node:path";
import type * as Uws from "uWebSockets.js";
import { RoutingError, asRoutingError } from "../core/errors.ts";
import type {
  BinaryListener,
  BinarySocket,
  BinaryStreamRoute,
  EngineOptions,
  GatewayEngine,
  HttpRequest,
  SocketHandle,
  SocketListener,
  UpgradeDecision,
  UpgradeRequest,
} from "./engine.ts";
import { createRequestGuard, requestTimedOut } from "./request-guard.ts";
import { mountUwsEventStream } from "./sse/uws-stream.ts";
import { closeCode, closeReason, errorOutgoing, missingSubprotocol, normalizeOr500, reportAsync, tooLarge, type Outgoing } from "./responses.ts";

type UwsModule = typeof Uws;

const require = createRequire(import.meta.url);

/** The binary's file name for this process: `uws_<platform>_<arch>_<Node ABI>.node`. */
export function uwsNativeFile(): string {
  return `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
}

/** Absolute path of the native binary this process needs (it may not exist). */
export function uwsNativePath(): string {
  return join(dirname(require.resolve("uWebSockets.js/package.json")), "binaries", uwsNativeFile());
}

/**
 * Loads the native uWS addon from `path` (default: this platform's binary). Throws, never falls
 * back to the package's JS polyfill.
 */
export function loadUwsNative(path?: string): UwsModule {
  let file = path ?? uwsNativeFile();
  try {
    file = path ?? uwsNativePath();
    const mod = require(file) as UwsModule;
    if (typeof mod.App !== "function" || typeof mod.us_socket_local_port !== "function") {
      throw new Error("the file does not export the uWS API");
    }
    return mod;
  } catch (err) {
    throw new Error(
      `cannot load the native uWebSockets.js binary ${file} ` +
        `(platform ${process.platform}, arch ${process.arch}, Node ${process.version}, Node ABI ${process.versions.modules}): ` +
        `${err instanceof Error ? err.message : String(err)}. ` +
        `The JS fallback is deliberately not used; set ROUTING_GATEWAY_ENGINE=ws to use the portable engine.`,
      { cause: err },
    );
  }
}

/**
 * uWS drops (does not queue) a send once a socket's backpressure passes `maxBackpressure`. The
 * session enforces its own, much lower, limit by reading bufferedAmount; this ceiling only
 * guards memory against a session that stopped looking. Read as an int32 by the addon.
 */
const MAX_BACKPRESSURE_BYTES = 1024 * 1024 * 1024;
/** uWS.WebSocket#send results. */
const SEND_DROPPED = 2;
/** Close code for remaining sockets when the engine closes. */
const GOING_AWAY = 1001;
/** Close code for a text frame on a binary stream route. */
const UNSUPPORTED_DATA = 1003;

interface SocketState<C> {
  readonly context: C;
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

/** A socket on a binary stream route (see BinaryStreamRoute). */
interface BinaryState {
  readonly request: UpgradeRequest;
  handle: BinarySocket | undefined;
  listener: BinaryListener | undefined;
  closed: boolean;
  notified: boolean;
  inCall: number;
}

/**
 * A WebSocket as the gateway sees it. A class, not an object of closures: one lives per idle
 * connection, and per-connection closures cost far more than their code suggests (README,
 * "Performance": idle connections).
 */
class UwsSocketHandle<C> implements SocketHandle {
  readonly #state: SocketState<C>;
  readonly #ws: Uws.WebSocket<UserData<C>>;

  constructor(state: SocketState<C>, ws: Uws.WebSocket<UserData<C>>) {
    this.#state = state;
    this.#ws = ws;
  }

  send(text: string): boolean {
    if (this.#state.closed) return false;
    // Not corked: an uncorked send is already one sendto(2) per frame (strace: 1,001 for 1,000).
    return this.#ws.send(text, false) !== SEND_DROPPED;
  }

  bufferedAmount(): number {
    return this.#state.closed ? 0 : this.#ws.getBufferedAmount();
  }

  ping(): void {
    if (!this.#state.closed) this.#ws.ping();
  }

  close(code: number, reason: string): void {
    const state = this.#state;
    if (state.closed) return;
    state.inCall++;
    try {
      this.#ws.end(closeCode(code), closeReason(reason));
    } finally {
      state.inCall--;
    }
  }
}

/** uWS's `ListenOptions` (a const enum in its typings, so not importable as a value). */
const LIBUS_LISTEN_DEFAULT = 0;
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
const MESSAGE_TOO_BIG = 1009;

/**
 * The frame size uWS buffers before it drops the connection outright: 4x the cap, at least 1 MiB.
 * Frames between the cap and this get a clean 1009; this bounds what one frame can cost in memory.
 */
export function uwsFrameCeiling(maxBody: number): number {
  return Math.max(4 * maxBody, 1 << 20);
}
/** `app.listen(host, port, options, cb)`: the native binding takes it, the shipped typings lack the overload. */
type ListenWithOptions = (this: Uws.TemplatedApp, host: string, port: number, options: number, cb: (socket: Uws.us_listen_socket | false) => void) => Uws.TemplatedApp;

export function createUwsEngine<C>(options: EngineOptions<C>): GatewayEngine {
  const uws = loadUwsNative();
  const app = uws.App();
  const listenWithOptions = app.listen as unknown as ListenWithOptions;
  const maxBody = options.maxBodyBytes;
  const openSockets = new Set<SocketState<C>>();
  let listenSocket: Uws.us_listen_socket | undefined;
  let stopped = false;

  // ---- WebSocket ------------------------------------------------------------------------------

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
    try {
      state.listener = options.sockets.open(state.handle, state.context);
    } catch (err) {
      state.handle.close(1011, "internal error");
      reportAsync(err);
    }
  };

  const guard = createRequestGuard(options.hygiene);

  app.ws<UserData<C>>(options.wsPath, {
    // uWS drops a frame over maxPayloadLength without a close frame (the client sees 1006), so it
    // gets headroom and the cap is enforced in `message` with 1009. Past the headroom uWS still drops.
    maxPayloadLength: uwsFrameCeiling(maxBody),
    idleTimeout: 0,
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    // The addon reads it as a boolean; the shipped typings say number.
    closeOnBackpressureLimit: 0,
    sendPingsAutomatically: false,
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

  // ---- binary stream routes (MQTT over WebSocket) -------------------------------------------

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
  for (const route of options.streams ?? []) streamRoute(route);

  // ---- HTTP -----------------------------------------------------------------------------------

  if (options.eventStream !== undefined) mountUwsEventStream(app, options.eventStream, guard);

  app.any("/*", (res, req) => {
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const rawQuery = req.getQuery() ?? "";
    const headers = copyHeaders(req);
    const bodyLimit = options.maxBodyBytesFor?.(path) ?? maxBody;

    // An upgrade that did not reach the WebSocket route: another path, or a handshake uWS rejected.
    if (isUpgradeAttempt(headers)) {
      const err =
        path === options.wsPath || options.streams?.some((route) => route.path === path)
          ? new RoutingError("INVALID_REQUEST", "invalid WebSocket handshake")
          : new RoutingError("NOT_FOUND", `no WebSocket endpoint at ${path}`);
      writeResponse(res, method, errorOutgoing(err), true);
      return;
    }

    const declared = headers["content-length"];
    if (declared !== undefined && Number(declared) > bodyLimit) {
      options.onRefused?.("body", path);
      writeResponse(res, method, tooLarge(bodyLimit), true);
      return;
    }

    let leave: () => void;
    try {
      leave = guard.enter();
    } catch (err) {
      writeResponse(res, method, errorOutgoing(asRoutingError(err)), true);
      return;
    }
    let aborted = false;
    let done = false;
    // A body that does not arrive in time is answered 408 and its connection closed, not held.
    const bodyTimer =
      guard.bodyTimeoutMs > 0
        ? setTimeout(() => {
            if (done || aborted) return;
            done = true;
            chunks.length = 0;
            leave();
            res.cork(() => writeResponse(res, method, errorOutgoing(requestTimedOut(guard.bodyTimeoutMs)), true));
          }, guard.bodyTimeoutMs)
        : undefined;
    bodyTimer?.unref();
    res.onAborted(() => {
      aborted = true;
      clearTimeout(bodyTimer);
      leave();
    });
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (done || aborted) return;
      size += chunk.byteLength;
      if (size > bodyLimit) {
        done = true;
        clearTimeout(bodyTimer);
        leave();
        chunks.length = 0;
        options.onRefused?.("body", path);
        res.cork(() => writeResponse(res, method, tooLarge(bodyLimit), true));
        return;
      }
      // Copy: the chunk is neutered when this callback returns.
      if (chunk.byteLength > 0) chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (!isLast) return;
      done = true;
      clearTimeout(bodyTimer);
      leave();
      const request: HttpRequest = { method, path, query: new URLSearchParams(rawQuery), headers, body: Buffer.concat(chunks, size) };
      Promise.resolve()
        .then(() => options.http(request))
        .then(normalizeOr500, (err: unknown) => errorOutgoing(asRoutingError(err)))
        .then((out) => {
          if (aborted) return;
          res.cork(() => writeResponse(res, method, out, false));
        });
    });
  });

  // ---- lifecycle ------------------------------------------------------------------------------

  return {
    name: "uws",
    listen(host, port) {
      if (stopped) return Promise.reject(new Error("the uws engine is closed"));
      if (listenSocket) return Promise.reject(new Error("the uws engine is already listening"));
      return new Promise<number>((resolve, reject) => {
        // uWS sets SO_REUSEPORT unless told LIBUS_LISTEN_EXCLUSIVE_PORT: a second process would then bind
        // the same port and the kernel would split connections (and sessions) between the two.
        listenWithOptions.call(app, host, port, options.reusePort ? LIBUS_LISTEN_DEFAULT : LIBUS_LISTEN_EXCLUSIVE_PORT, (socket) => {
          if (socket) {
            listenSocket = socket;
            resolve(uws.us_socket_local_port(socket as unknown as Uws.us_socket));
          } else {
            // uWS only says `false`: ask the OS why with a plain bind on the same address.
            void diagnoseListenFailure(host, port).then(reject);
          }
        });
      });
    },
    async close() {
      stopped = true;
      if (listenSocket) {
        uws.us_listen_socket_close(listenSocket);
        listenSocket = undefined;
      }
      // Sessions close their sockets first; whatever is left goes away now.
      for (const state of [...openSockets]) state.handle?.close(GOING_AWAY, "server closing");
      for (const state of [...openStreams]) state.handle?.close(GOING_AWAY, "server closing");
      // Not in the shipped typings: closes every remaining connection (idle keep-alive HTTP included).
      (app as Uws.TemplatedApp & { close?: () => void }).close?.();
    },
  };
}

// ---- helpers ------------------------------------------------------------------------------------

function copyHeaders(req: Uws.HttpRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  req.forEach((key, value) => {
    const name = key.toLowerCase();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  });
  return headers;
}

function isUpgradeAttempt(headers: Readonly<Record<string, string>>): boolean {
  const connection = headers["connection"];
  return (
    !!headers["upgrade"] &&
    connection !== undefined &&
    connection.split(",").some((token) => token.trim().toLowerCase() === "upgrade")
  );
}

function parseProtocols(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

function statusLine(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? "Unknown"}`;
}

/** Writes a whole response; call synchronously in a handler or inside `res.cork()`. */
function writeResponse(res: Uws.HttpResponse, method: string, out: Outgoing, closeConnection: boolean): void {
  res.writeStatus(statusLine(out.status));
  for (const [name, value] of out.headers) res.writeHeader(name, value);
  // endWithoutBody(undefined, ...) writes "Content-Length: 9223372036854775808" and leaves the
  // response open: only ever call it with no argument or with a number.
  if ((out.status === 204 || out.status === 304) && !closeConnection) res.endWithoutBody();
  else if (out.status === 204 || out.status === 304) res.end(undefined, true);
  else if (method === "HEAD") res.endWithoutBody(out.body.length, closeConnection);
  else res.end(out.body, closeConnection);
}

/** Why uWS could not listen: bind the same address with node:net and report its error code. */
function diagnoseListenFailure(host: string, port: number): Promise<Error> {
  const failure = (code: string, cause?: unknown): Error =>
    Object.assign(new Error(`listen ${code}: uWS could not bind ${host}:${port}`, { cause }), {
      code,
      syscall: "listen",
      address: host,
      port,
    });
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => resolve(failure(err.code ?? "EADDRINUSE", err)));
    // The probe bound, so the port was freed in between (or uWS failed for another reason): report
    // the usual cause rather than guess.
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(failure("EADDRINUSE"))));
  });
}

