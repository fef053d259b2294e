-- delay_due.lua: claim the delayed messages that are due.
--
-- KEYS[1]  sorted set: message key -> due time (unix seconds)
-- KEYS[2]  hash: message key -> payload
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  lease in seconds
-- ARGV[3]  the most messages to claim
--
-- Moves each due message's score to now + lease, so no other caller claims it before the
-- lease ends; the caller publishes it and removes it (delay_done), or dies and it is claimed
-- again after the lease. A key without a payload is dropped.
-- Returns {key_1, payload_1, key_2, payload_2, ...}, earliest due first.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local lease_end = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out = {}
for _, key in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], key)
  if payload then
    redis.call('ZADD', KEYS[1], lease_end, key)
    out[#out + 1] = key
    out[#out + 1] = payload
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return out
