-- take_record.lua: on a Redis Cluster, delete a task's record and say what it was, so that
-- resume uncounts it from the tracked progress (in another slot) only if this call deleted it.
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- KEYS[2]  its chord-part intent (same slot), deleted with it
--
-- Returns the deleted record's state, or false when there was none (deleted before: a reset
-- repeated after a crash, which therefore uncounts nothing again).

local state = string.match(redis.call('GETRANGE', KEYS[1], 0, 63), '^([^\n]*)')
redis.call('DEL', KEYS[2])
if redis.call('DEL', KEYS[1]) == 1 then return state end
return false
