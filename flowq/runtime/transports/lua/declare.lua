-- Declare a queue: a consumer group on each of its streams (created empty if need be)
-- and its options. Declaring again is harmless; options given again replace the old.
--
-- KEYS[1]      the queue's meta hash (its existence is the queue's)
-- KEYS[2..]    the queue's streams, one per priority
-- ARGV[1]      the consumer group
-- ARGV[2]      x-max-length, or '' for none
-- ARGV[3]      x-expires in ms, or '' for none (every key of the queue expires unused)
-- Returns 1 when the queue did not exist.
local new = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], 'declared', '1')
for _, field in ipairs({'max_length', 'expires'}) do
  local value = ARGV[field == 'max_length' and 2 or 3]
  if value == '' then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, value)
  end
end
for i = 2, #KEYS do
  -- '0': a group made after messages arrived still delivers them
  local made = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
    return redis.error_reply(made.err)
  end
end
for _, key in ipairs(KEYS) do
  if ARGV[3] == '' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return new and 1 or 0
