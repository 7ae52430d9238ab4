import { Redis } from "ioredis";

/** Deletes every key under `<prefix>:` on the bench's Redis (a run's own tag), scanning in pages. */
export async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379");
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
