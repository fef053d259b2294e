-- lease_acquire.lua: take a free lease, or renew it for the owner holding it.
--
-- KEYS[1]  lease: string holding the owner's id, expiring when the lease ends
-- ARGV[1]  owner id
-- ARGV[2]  lease length in milliseconds
--
-- Returns 1 when the owner holds the lease now, 0 while another owner does.

if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
