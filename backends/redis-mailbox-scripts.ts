import { createHash } from "node:crypto";

/*
 * The Lua scripts of the Redis mailbox (backends/redis-mailbox.ts describes the keys). Every script
 * touches one recipient's keys only, all under its hash tag `{<urn>}`: one Redis Cluster slot.
 * The per-recipient keys every message script takes, in this order:
 *   KEYS[1] order, KEYS[2] entries, KEYS[3] queued, KEYS[4] sizes, KEYS[5] bytes.
 */

export interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

/** Low-priority messages sort after every high-priority one; sequences stay far below it. */
export const LOW_PRIORITY_OFFSET = 1e15;

/** Removes one message from the five message keys; returns 1 if it was there. */
const REMOVE = `
local function remove(id)
  if redis.call('HDEL', KEYS[2], id) == 0 then return 0 end
  local size = redis.call('HGET', KEYS[4], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  if size then redis.call('DECRBY', KEYS[5], size) end
  return 1
end
-- Expired messages (queuedAt <= cutoff) of this mailbox, at most max; returns how many went.
local function expire(cutoff, max)
  local removed = 0
  while removed < max do
    local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', cutoff, 'LIMIT', 0, math.min(500, max - removed))
    if #old == 0 then break end
    for _, id in ipairs(old) do removed = removed + remove(id) end
  end
  return removed
end
`;

/**
 * KEYS: the five, seq, dedup, dedup index. ARGV: dedupTtlMs, messageId, high (1/0), stored JSON,
 * queuedAt, envelope bytes. Returns -1 for a duplicate, else the mailbox's message count.
 * A message still in the mailbox after its window lapsed is a duplicate too (like the other stores).
 * The dedup index (messageId -> expiry, Redis's clock) lets `purge` find the records; it trims
 * what lapsed as it goes and lives as long as its newest record.
 */
export const STORE = script(`
if not redis.call('SET', KEYS[7], '1', 'NX', 'PX', ARGV[1]) then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
redis.call('ZADD', KEYS[8], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[8], ARGV[1])
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[6])
local score = seq
if ARGV[3] ~= '1' then score = score + ${LOW_PRIORITY_OFFSET} end
redis.call('ZADD', KEYS[1], score, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[6])
redis.call('INCRBY', KEYS[5], ARGV[6])
return redis.call('ZCARD', KEYS[1])
`);

/**
 * KEYS: the five. ARGV: limit, retention cutoff. Removes this mailbox's expired messages first (so
 * none is returned), then returns [expired, count, id1, json1, id2, json2, ...].
 */
export const FETCH = script(`${REMOVE}
local expired = expire(ARGV[2], 1e9)
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local out = {expired, redis.call('ZCARD', KEYS[1])}
if #ids == 0 then return out end
local values = redis.call('HMGET', KEYS[2], unpack(ids))
for i, id in ipairs(ids) do
  if values[i] then
    out[#out + 1] = id
    out[#out + 1] = values[i]
  end
end
return out
`);

/** KEYS: the five. ARGV: message ids. Returns [removed, count]. */
export const ACK = script(`${REMOVE}
local removed = 0
for _, id in ipairs(ARGV) do removed = removed + remove(id) end
return {removed, redis.call('ZCARD', KEYS[1])}
`);

/** KEYS: the five. ARGV: cutoff, max. Returns [removed, count, oldest queuedAt or -1]. */
export const EXPIRE = script(`${REMOVE}
local removed = expire(ARGV[1], tonumber(ARGV[2]))
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local oldest = -1
if #first == 2 then oldest = tonumber(first[2]) end
return {removed, redis.call('ZCARD', KEYS[1]), oldest}
`);

/**
 * KEYS: the five, seq, dedup index. ARGV: dedup key prefix (`...mbox:{<urn>}:dedup:`), max records.
 * Removes every message together with its de-duplication record, then up to `max` other records
 * (their keys share the hash tag, so the slot is the same). Returns [messages, dedup, records left];
 * the caller repeats until none is left. A store between two calls leaves both its parts, and the
 * next call removes both.
 */
export const PURGE = script(`
local messages = 0
local dedup = 0
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  messages = messages + 1
  dedup = dedup + redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[7], id)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for _, id in ipairs(redis.call('ZRANGE', KEYS[7], 0, tonumber(ARGV[2]) - 1)) do
  dedup = dedup + redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[7], id)
end
local left = redis.call('ZCARD', KEYS[7])
if left == 0 then redis.call('DEL', KEYS[6], KEYS[7]) end
return {messages, dedup, left}
`);
