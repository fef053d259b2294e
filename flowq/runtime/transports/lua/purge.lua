-- Delete up to LIMIT ready messages of one queue (see size.lua); held ones stay.
--
-- KEYS         the queue's streams, highest priority first
-- ARGV[1]      the consumer group
-- ARGV[2]      lease in ms
-- ARGV[3]      the most to delete in this call (the caller calls again until 0)
-- Returns how many were deleted.
local group, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted = 0
for _, key in ipairs(KEYS) do
  if deleted >= limit then break end
  if redis.call('EXISTS', key) == 1 then
    local lapsed = redis.call('XPENDING', key, group, 'IDLE', lease, '-', '+', limit - deleted)
    if #lapsed > 0 then
      local ids = {}
      for i, entry in ipairs(lapsed) do ids[i] = entry[1] end
      redis.call('XACK', key, group, unpack(ids))
      redis.call('XDEL', key, unpack(ids))
      deleted = deleted + #ids
    end
    local last = '0-0'
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local fields = {}
      for n = 1, #info, 2 do fields[info[n]] = info[n + 1] end
      if fields['name'] == group then last = fields['last-delivered-id'] end
    end
    if deleted < limit then
      local fresh = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', limit - deleted)
      if #fresh > 0 then
        local ids = {}
        for i, entry in ipairs(fresh) do ids[i] = entry[1] end
        redis.call('XDEL', key, unpack(ids))
        deleted = deleted + #ids
      end
    end
  end
end
return deleted
