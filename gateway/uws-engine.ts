/**
 * The `uws` engine: uWebSockets.js (native), behind the engine seam (engine.ts). This file wires
 * the parts and owns listening: uws-native.ts (loading the binary, shared limits), uws-http.ts
 * (HTTP requests), uws-sockets.ts (the WebSocket route and its socket bookkeeping), uws-streams.ts
 * (byte-stream routes: MQTT over WebSocket).
 */
import net from "node:net";
import type * as Uws from "uWebSockets.js";
import type { EngineOptions, GatewayEngine } from "./engine.ts";
import { createRequestGuard } from "./request-guard.ts";
import { serveHttp } from "./uws-http.ts";
import { GOING_AWAY, loadUwsNative } from "./uws-native.ts";
import { serveSockets } from "./uws-sockets.ts";
import { serveStreams } from "./uws-streams.ts";

export { loadUwsNative, uwsFrameCeiling, uwsNativeFile, uwsNativePath } from "./uws-native.ts";

/** uWS's `ListenOptions` (a const enum in its typings, so not importable as a value). */
const LIBUS_LISTEN_DEFAULT = 0;
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;

/** `app.listen(host, port, options, cb)`: the native binding takes it, the shipped typings lack the overload. */
type ListenWithOptions = (
  this: Uws.TemplatedApp,
  host: string,
  port: number,
  options: number,
  cb: (socket: Uws.us_listen_socket | false) => void,
) => Uws.TemplatedApp;

export function createUwsEngine<C>(options: EngineOptions<C>): GatewayEngine {
  const uws = loadUwsNative();
  const app = uws.App();
  const listenWithOptions = app.listen as unknown as ListenWithOptions;
  let listenSocket: Uws.us_listen_socket | undefined;
  let stopped = false;
  const guard = createRequestGuard(options.hygiene);
  const sockets = serveSockets(uws, app, options, guard);
  const streams = serveStreams(uws, app, options.streams ?? []);
  serveHttp(app, options, guard);

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
      sockets.closeAll(GOING_AWAY, "server closing");
      streams.closeAll(GOING_AWAY, "server closing");
      // Not in the shipped typings: closes every remaining connection (idle keep-alive HTTP included).
      (app as Uws.TemplatedApp & { close?: () => void }).close?.();
    },
  };
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
