import retry from "retry";

/** The longest retry delay anywhere: 30 s. */
export const MAX_RETRY_DELAY_MS = 30_000;

/**
 * The delay before retry number `attempt` (1 = the first retry): `base` doubled per attempt, capped
 * at 30 s, times a random factor in [1, 2) (the `retry` library's randomised timeout), so records or
 * pushes that failed together (a backend outage) do not all come back in the same instant. Never
 * shorter than the plain exponential delay.
 */
export function jitteredDelayMs(base: number, attempt: number): number {
  return retry.createTimeout(Math.max(0, attempt - 1), { minTimeout: Math.max(1, base), factor: 2, maxTimeout: MAX_RETRY_DELAY_MS, randomize: true });
}
