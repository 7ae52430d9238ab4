/** Routing (mailbox store, then signals) slower than this on average: they fall behind. */
export const SLOW_ROUTE_MS = 250;
/** Back to this on average: caught up (hysteresis, so intake does not flap). */
export const CAUGHT_UP_MS = 50;

/**
 * Watches how long routing a record takes (an exponentially weighted average over the last ~10)
 * and tells the router actor when the store or the signals fall behind and when they caught up:
 * `router.downstream.slow` / `router.downstream.caughtUp`, once per change.
 */
export function createDownstreamWatch(tell: (event: "router.downstream.slow" | "router.downstream.caughtUp") => void) {
  let average = 0;
  let slow = false;
  return {
    took(ms: number): void {
      average = average === 0 ? ms : average * 0.9 + ms * 0.1;
      if (!slow && average > SLOW_ROUTE_MS) {
        slow = true;
        tell("router.downstream.slow");
      } else if (slow && average < CAUGHT_UP_MS) {
        slow = false;
        tell("router.downstream.caughtUp");
      }
    },
    slow: () => slow,
  };
}
