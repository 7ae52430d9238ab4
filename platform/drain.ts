import { RoutingError } from "../core/errors.ts";
import type { Ingress } from "../routing/ingress.ts";

/**
 * The drain's one deadline (ROUTING_SHUTDOWN_TIMEOUT_MS), counted from the moment the stop began.
 * Each phase takes a share of what is left, so the phases together end before the process runner's
 * forced exit at the deadline.
 */
export class DrainClock {
  readonly #totalMs: number;
  #startedAt: number | undefined;

  constructor(totalMs: number) {
    this.#totalMs = totalMs;
  }

  start(): void {
    this.#startedAt ??= Date.now();
  }

  /** Time left until `fraction` of the whole deadline has passed since the drain began (never negative). */
  until(fraction: number): number {
    const startedAt = this.#startedAt ?? Date.now();
    return Math.max(0, startedAt + this.#totalMs * fraction - Date.now());
  }
}

/** Resolves when `promise` settles or after `ms`, whichever comes first. */
export function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => {},
      () => {},
    ),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The ingress with a gate: once closed, every new send on every path (HTTP, WebSocket, MQTT, the
 * `ingress.accept` action) is refused with SHUTTING_DOWN before anything is published, and
 * `settled()` resolves when the sends already being accepted have their answer (accepted: durable
 * on the bus; or refused). A send is therefore never half-accepted by a drain: it either got in
 * before the gate closed and finishes, or it is refused and nothing of it was stored.
 */
export function gateIngress(inner: Ingress) {
  let open = true;
  const inFlight = new Set<Promise<unknown>>();
  const refuse = (): never => {
    throw new RoutingError("SHUTTING_DOWN", "this instance is shutting down; retry on another instance");
  };
  const track = <T>(work: Promise<T>): Promise<T> => {
    inFlight.add(work);
    const done = () => inFlight.delete(work);
    work.then(done, done);
    return work;
  };
  const ingress: Ingress = {
    ...inner,
    accept: (value, identity, path) =>
      open
        ? track(inner.accept(value, identity, path))
        : Promise.reject(new RoutingError("SHUTTING_DOWN", "this instance is shutting down; retry on another instance")),
    acceptBytes: (raw, identity, path) => {
      if (!open) return Promise.resolve().then(refuse);
      return track(inner.acceptBytes(raw, identity, path));
    },
    acceptBatch: (values, identity, path) => {
      if (!open) return Promise.resolve().then(refuse);
      return track(inner.acceptBatch(values, identity, path));
    },
  };
  return {
    ingress,
    close(): void {
      open = false;
    },
    isOpen: () => open,
    /** Resolves when every send accepted before `close()` has settled. */
    settled: (): Promise<void> => Promise.allSettled([...inFlight]).then(() => {}),
    inFlight: () => inFlight.size,
  };
}

export type IngressGate = ReturnType<typeof gateIngress>;
