/** Running totals of one node (metrics/registry.ts `totals()`). */
export interface Totals {
  readonly accepted: number;
  readonly routed: number;
}

export interface Rates {
  /** Seconds the rates cover (less than the window until it has filled, 0 before the second sample). */
  readonly windowSeconds: number;
  readonly acceptedPerSecond: number;
  readonly routedPerSecond: number;
}

/**
 * Throughput over the last `windowSeconds`, from samples of the running totals. `sample()` is
 * called once a second by the status service; `rates()` compares now with the oldest sample kept.
 * O(window) memory, no timers of its own.
 */
export function createThroughput(read: () => Totals, windowSeconds = 10, now: () => number = Date.now) {
  const samples: Array<Totals & { readonly at: number }> = [];
  return {
    sample(): void {
      samples.push({ at: now(), ...read() });
      while (samples.length > windowSeconds + 1) samples.shift();
    },
    rates(): Rates {
      const current = { at: now(), ...read() };
      const oldest = samples[0];
      const seconds = oldest ? (current.at - oldest.at) / 1000 : 0;
      if (!oldest || seconds <= 0) return { windowSeconds: 0, acceptedPerSecond: 0, routedPerSecond: 0 };
      const rate = (delta: number) => Math.round((delta / seconds) * 100) / 100;
      return {
        windowSeconds: Math.round(seconds * 10) / 10,
        acceptedPerSecond: rate(current.accepted - oldest.accepted),
        routedPerSecond: rate(current.routed - oldest.routed),
      };
    },
  };
}

export type Throughput = ReturnType<typeof createThroughput>;
