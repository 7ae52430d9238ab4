import type { Redis } from "ioredis";
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";

export interface SendRateOptions {
  /** Sustained sends per second per identity; 0 switches the limit off. */
  readonly ratePerSecond: number;
  /** Sends above the rate one identity may make at once. */
  readonly burst: number;
  /** Shared by the cluster: the count holds across nodes. Absent: this process counts alone. */
  readonly redis?: Redis;
  /** Redis key prefix (the cluster's prefix plus this role's). */
  readonly keyPrefix: string;
}

/** Consumes one send of `identity`, or throws RATE_LIMITED carrying `retryAfterMs`. */
export interface SendRateLimiter {
  consume(identity: Urn): Promise<void>;
}

const OFF: SendRateLimiter = { consume: () => Promise.resolve() };

/**
 * Per-identity send rate and burst with rate-limiter-flexible (no hand-written twin):
 * - the rate is a fixed 1-second window of `ratePerSecond` points;
 * - the burst is a second limiter of `burst` points refilled over 10 x burst / rate seconds, drawn
 *   only when the rate's window is spent (`BurstyRateLimiter`). So one identity may send
 *   rate + burst in its first second, and on average at most 1.1 x rate over a long run.
 * - With Redis (the cluster has it) both windows live there, so every node counts the same sends;
 *   if Redis fails, a per-process memory limiter with the same figures stands in
 *   (`insuranceLimiter`): a Redis outage loosens the limit to per node, it never refuses every send.
 */
export function createSendRateLimiter(options: SendRateOptions): SendRateLimiter {
  if (options.ratePerSecond <= 0) return OFF;
  const rate = options.ratePerSecond;
  const burstSeconds = Math.max(1, Math.ceil((10 * options.burst) / rate));
  const memory = (keyPrefix: string, points: number, duration: number) => new RateLimiterMemory({ keyPrefix, points, duration });
  const make = (name: string, points: number, duration: number) =>
    options.redis === undefined
      ? memory(name, points, duration)
      : new RateLimiterRedis({
          storeClient: options.redis,
          keyPrefix: options.keyPrefix + name,
          points,
          duration,
          rejectIfRedisNotReady: true,
          insuranceLimiter: memory(name, points, duration),
        });
  const limiter = options.burst > 0 ? new BurstyRateLimiter(make("rate", rate, 1), make("burst", options.burst, burstSeconds)) : make("rate", rate, 1);

  return {
    async consume(identity) {
      try {
        await limiter.consume(identity, 1);
      } catch (rejection) {
        if (rejection instanceof RateLimiterRes) {
          throw new RoutingError("RATE_LIMITED", `more than ${rate} sends per second from this identity; retry later`, {
            retryAfterMs: Math.max(1, rejection.msBeforeNext),
          });
        }
        // Both the store and its insurance failed: refuse as unavailable (nothing was accepted).
        throw new RoutingError("BACKEND_UNAVAILABLE", "rate limit store unavailable", { cause: rejection });
      }
    },
  };
}
