-- flag_set.lua: set a once-only flag (SET NX) so that a retried call gets the same answer.
--
-- KEYS[1]  flag: string holding the token of the call that set it
-- ARGV[1]  token: unique to this set_flag() call
-- ARGV[2]  expiry in milliseconds, "" for none
--
-- Returns 1 when this call set the flag (now, or before a reply that was lost), else 0.

local set
if ARGV[2] == '' then
  set = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  set = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if set or redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
