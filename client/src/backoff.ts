/**
 * Jittered exponential backoff ("equal jitter": half the step fixed, half random), so a fleet of
 * clients that lost the same server does not come back in lock-step, yet none retries at once.
 */
export interface BackoffOptions {
  /** First delay's ceiling, ms. Default 500. */
  readonly baseMs?: number;
  /** Largest delay, ms. Default 30 000. */
  readonly maxMs?: number;
}

export class Backoff {
  readonly #baseMs: number;
  readonly #maxMs: number;
  #attempt = 0;

  constructor(
    options: BackoffOptions = {},
    readonly random: () => number = Math.random,
  ) {
    this.#baseMs = options.baseMs ?? 500;
    this.#maxMs = options.maxMs ?? 30_000;
  }

  /** The next delay (grows per call until `reset`); at least `floorMs` (a server's Retry-After). */
  next(floorMs = 0): number {
    const step = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.max(floorMs, Math.round(step / 2 + this.random() * (step / 2)));
  }

  reset(): void {
    this.#attempt = 0;
  }

  get attempts(): number {
    return this.#attempt;
  }
}
