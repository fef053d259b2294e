-- lease_release.lua: give up a lease, only if the caller holds it.
--
-- KEYS[1]  lease: string holding the owner's id
-- ARGV[1]  owner id
--
-- Returns 1 when the lease was released, 0 when the caller did not hold it.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
