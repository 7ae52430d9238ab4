import type { Mailbox } from "../backends/mailbox.ts";

export interface RetentionSweepOptions {
  readonly mailbox: Pick<Mailbox, "expire">;
  /** Time between sweeps. */
  readonly intervalMs: number;
  /** Messages one `expire` call removes at most; the sweep yields to the event loop between calls. */
  readonly batch?: number;
  readonly onExpired: (count: number) => void;
  readonly log: { warn(obj: object, msg: string): void };
}

/**
 * Removes expired messages on a timer, `batch` at a time until none is left, one call after the
 * other (never two at once), yielding between calls so sends, fetches and acks go on. Fetches hide
 * expired messages already, so a late or failed sweep only delays reclaiming space.
 */
export function startRetentionSweep(opts: RetentionSweepOptions): { sweep(): Promise<number>; stop(): Promise<void> } {
  const batch = opts.batch ?? 500;
  let running: Promise<number> | undefined;
  let stopped = false;

  async function run(): Promise<number> {
    let total = 0;
    while (!stopped) {
      const removed = await opts.mailbox.expire(batch);
      total += removed;
      if (removed > 0) opts.onExpired(removed);
      if (removed < batch) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return total;
  }

  function sweep(): Promise<number> {
    running ??= run().finally(() => {
      running = undefined;
    });
    return running;
  }

  const timer = setInterval(() => {
    sweep().catch((err: unknown) => opts.log.warn({ err }, "retention sweep failed; the next one retries"));
  }, opts.intervalMs);
  timer.unref();

  return {
    sweep,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}

/** A sweep every tenth of the retention, at least every second and at most every minute. */
export function sweepIntervalMs(retentionMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.floor(retentionMs / 10)));
}
