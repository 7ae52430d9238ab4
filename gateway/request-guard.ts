import { RoutingError } from "../core/errors.ts";
import { OVERLOADED_RETRY_MS } from "../limits/ingress-gate.ts";

/** HTTP hygiene both engines apply (issue 14, docs/limits.md); a 0 switches one off. */
export interface HttpHygiene {
  /** Time a connection has to send a request's headers (ws engine: Node's headersTimeout; uws: its own 10 s idle timeout). */
  readonly headerTimeoutMs: number;
  /** Time a request has, once its headers arrived, to send its whole body; then 408 and the connection is dropped. */
  readonly bodyTimeoutMs: number;
  /** Requests still being read plus WebSocket upgrades being decided, at once, per engine. */
  readonly maxUnauthenticated: number;
}

export function requestTimedOut(ms: number): RoutingError {
  return new RoutingError("REQUEST_TIMEOUT", `the request body did not arrive within ${ms} ms`);
}

/**
 * Counts what is not yet authenticated (bodies being read, upgrades being decided) and refuses one
 * more past the cap with OVERLOADED: a flood of slow or idle requests cannot hold unbounded
 * sockets and buffers. `enter` returns a release function (idempotent) or throws.
 */
export function createRequestGuard(hygiene: HttpHygiene | undefined) {
  let open = 0;
  const max = hygiene?.maxUnauthenticated ?? 0;
  return {
    bodyTimeoutMs: hygiene?.bodyTimeoutMs ?? 0,
    headerTimeoutMs: hygiene?.headerTimeoutMs ?? 0,
    open: () => open,
    enter(): () => void {
      if (max > 0 && open >= max) {
        throw new RoutingError("OVERLOADED", "too many unauthenticated connections; retry later", { retryAfterMs: OVERLOADED_RETRY_MS });
      }
      open++;
      let left = false;
      return () => {
        if (left) return;
        left = true;
        open--;
      };
    },
  };
}

export type RequestGuard = ReturnType<typeof createRequestGuard>;
