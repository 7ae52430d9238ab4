import { Redis } from "ioredis";
import { connect as connectNats } from "nats";

/** Deletes every key under `prefix` on a Redis the tests share (SCAN, so a big key space is never blocked). */
export async function deleteRedisKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

/** Removes what a multi-node run created on the local servers: its Redis keys (`test-<run>:`) and its JetStream streams (`test_<run>`). */
export async function cleanUpRun(run: string): Promise<void> {
  const redis = new Redis("redis://127.0.0.1:6379");
  try {
    await deleteRedisKeys(redis, `test-${run}:`);
  } finally {
    await redis.quit();
  }
  const nc = await connectNats({ servers: "127.0.0.1:4222" });
  const jsm = await nc.jetstreamManager();
  for await (const stream of jsm.streams.list()) if (stream.config.name.startsWith(`test_${run}`)) await jsm.streams.delete(stream.config.name);
  await nc.close();
}
