/**
 * Loading the native uWebSockets.js binary directly, never through the package's `src/uws.js`,
 * which silently falls back to a slow JS polyfill when the native load fails; here a failed load is
 * an error that names the file, the Node ABI and the way out. And the limits every uWS route shares.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type * as Uws from "uWebSockets.js";

export type UwsModule = typeof Uws;

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
export const MAX_BACKPRESSURE_BYTES = 1024 * 1024 * 1024;
/**
 * uWS counts idle time in 4-second ticks and refuses an idleTimeout under 8 s; past 960 s the
 * timer's range ends. Outside that range the backstop is off (0) rather than wrong.
 */
export function uwsIdleTimeoutSeconds(seconds: number | undefined): number {
  if (seconds === undefined) return 0;
  const rounded = Math.ceil(Math.max(8, seconds) / 4) * 4;
  return rounded > 960 ? 0 : rounded;
}

/** uWS.WebSocket#send results. */
export const SEND_DROPPED = 2;
/** Close code for remaining sockets when the engine closes. */
export const GOING_AWAY = 1001;
/** Close code for a text frame on a binary stream route. */
export const UNSUPPORTED_DATA = 1003;
/** Close code for a frame over the cap on `wsPath`. */
export const MESSAGE_TOO_BIG = 1009;

/**
 * The frame size uWS buffers before it drops the connection outright: 4x the cap, at least 1 MiB.
 * Frames between the cap and this get a clean 1009; this bounds what one frame can cost in memory.
 */
export function uwsFrameCeiling(maxBody: number): number {
  return Math.max(4 * maxBody, 1 << 20);
}
