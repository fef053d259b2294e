-- chord_init.lua: on a Redis Cluster, create one chord's state with its expiry, atomically
-- (a single server does this for many chords in one MULTI; a cluster spreads chords over
-- slots, and a transaction cannot span slots).
--
-- KEYS[1]  chord: hash, see lib_part.lua
-- ARGV[1]  size: the number of members
-- ARGV[2]  expiry in milliseconds, "" for none
--
-- Returns 1 when this call created the chord, 0 when it existed (it is kept, expiry renewed).

local created = redis.call('HSETNX', KEYS[1], 'size', ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return created
