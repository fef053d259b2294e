-- Forget consumers of one queue that hold nothing and were not seen for a long time
-- (workers that were killed leave their names in the group).
--
-- KEYS         the queue's streams, highest priority first
-- ARGV[1]      the consumer group
-- ARGV[2]      idle ms after which an empty consumer is forgotten
-- Returns how many consumer names were removed.
local group, idle = ARGV[1], tonumber(ARGV[2])
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', key, group)) do
      local fields = {}
      for n = 1, #info, 2 do fields[info[n]] = info[n + 1] end
      if fields['pending'] == 0 and fields['idle'] > idle then
        redis.call('XGROUP', 'DELCONSUMER', key, group, fields['name'])
        removed = removed + 1
      end
    end
  end
end
return removed
