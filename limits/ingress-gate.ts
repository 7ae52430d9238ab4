import { RoutingError } from "../core/errors.ts";

/** When a sender refused OVERLOADED is told to retry (the HTTP `Retry-After` is this in seconds). */
export const OVERLOADED_RETRY_MS = 1000;
/** How often the bus backlog is read while there is traffic. */
const REFRESH_MS = 100;

export interface IngressGateOptions {
  /** ROUTING_INGRESS_MAX_PENDING; 0 switches the gate off. */
  readonly maxPending: number;
  /** Records accepted and not yet routed (acked by the router), as the bus knows them. */
  readonly backlog: () => Promise<number>;
  /** The same, synchronously and exact, where the bus holds it in this process (embedded). */
  readonly backlogNow?: () => number;
}

/**
 * Bounds what is accepted and not yet routed: the bus backlog (read every REFRESH_MS while sends
 * arrive) plus every publish this node started since that reading (so a burst between two readings
 * is counted, never missed: the estimate can only be above the truth, by what was routed
 * meanwhile). At the bound `enter` throws OVERLOADED and nothing is accepted, so memory stays
 * bounded whatever the offered load: the embedded bus holds at most maxPending records, and a
 * distributed bus is not fed faster than the routers drain it.
 *
 * What "the bus backlog" covers per bus (docs/limits.md): embedded SQLite and memory: every record
 * not yet acked, read synchronously (`backlogNow`, exact, no reading interval); NATS JetStream: the work-queue stream's message count (exact, the whole
 * cluster); Pub/Sub: its API has no backlog count, so only the records this node's router holds
 * plus this node's publishes under way.
 */
/**
 * One refusal for every refused send: under overload most sends are refused, and building an
 * Error (its stack trace) per refusal would make refusing cost more than it must.
 */
const FULL = new RoutingError("OVERLOADED", "the ingress is full; retry later", { retryAfterMs: OVERLOADED_RETRY_MS });

export function createIngressGate(options: IngressGateOptions) {
  const { maxPending, backlogNow } = options;
  let known = 0;
  let since = 0;
  let publishing = 0;
  let refreshing = false;
  let lastRefresh = 0;

  /** Local bus: exact (its backlog now plus publishes under way). Remote: the last reading plus what came since. */
  function estimate(): number {
    if (backlogNow !== undefined) return backlogNow() + publishing;
    if (Date.now() - lastRefresh >= REFRESH_MS) refresh();
    return known + since + publishing;
  }

  function refresh(): void {
    if (refreshing) return;
    refreshing = true;
    lastRefresh = Date.now();
    const counted = since;
    options.backlog().then(
      (backlog) => {
        known = backlog;
        since -= counted;
        refreshing = false;
      },
      () => {
        // Keep the old reading plus what came since: the estimate stays on the safe (high) side.
        refreshing = false;
      },
    );
  }

  return {
    /** Accepted-not-routed as estimated now. */
    pending: (): number => estimate(),
    /** Throws OVERLOADED when full, admitting nothing: a cheap first check before parsing a send. */
    check(): void {
      if (maxPending > 0 && estimate() >= maxPending) throw FULL;
    },
    /**
     * Admits one publish or throws OVERLOADED. Call `leave(accepted)` exactly once after the
     * publish settled (accepted: the bus took it).
     */
    enter(): void {
      if (maxPending <= 0) return;
      if (estimate() >= maxPending) throw FULL;
      publishing++;
    },
    leave(accepted: boolean): void {
      if (maxPending <= 0) return;
      publishing--;
      if (accepted) since++;
    },
  };
}

export type IngressGate = ReturnType<typeof createIngressGate>;
