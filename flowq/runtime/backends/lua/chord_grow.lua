-- chord_grow.lua: add parts to a chord, once per claim (see ResultBackend.chord_grow).
--
-- KEYS[1]  chord: the hash store.lua keeps (size, n, fired, failed, "<index>" -> part),
--          plus "g:<claim>" -> the size before that claim grew it
-- ARGV[1]  claim: names this growth; the same claim again gets the same answer
-- ARGV[2]  how many parts to add
-- ARGV[3]  expiry in milliseconds of the chord, "" to keep the one it has
--
-- Returns the size before growing (the first new part's index), or -1 when the chord is
-- gone, complete (fired) or failed, and nothing may be added.

local chord = KEYS[1]
if redis.call('EXISTS', chord) == 0 then return -1 end
local mark = 'g:' .. ARGV[1]
local seen = redis.call('HGET', chord, mark)
if seen then return tonumber(seen) end
local meta = redis.call('HMGET', chord, 'size', 'fired', 'failed')
if meta[2] or meta[3] then return -1 end
redis.call('HSET', chord, mark, meta[1])
redis.call('HINCRBY', chord, 'size', tonumber(ARGV[2]))
if ARGV[3] ~= '' then redis.call('PEXPIRE', chord, ARGV[3]) end
return tonumber(meta[1])
