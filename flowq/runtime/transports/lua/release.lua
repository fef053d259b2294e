-- Give messages of one queue back at once, keeping their place and delivery count: they
-- pass to a placeholder consumer with an idle time longer than any lease, so the next
-- consumer looking for lapsed messages (take.lua) takes them. A wake-up entry (field "w")
-- added to a stream concerned wakes a consumer blocked on it to look right away; at most
-- one a second per queue (a burst of releases needs one look).
--
-- KEYS[1..n]   the queue's streams, highest priority first
-- KEYS[n+1]    the queue's wake-up marker (string, expires after a second)
-- ARGV[1]      the consumer group
-- ARGV[2]      the consumer giving them back
-- ARGV[3]      the placeholder consumer holding released messages
-- ARGV[4]      the idle time (ms) released messages get
-- ARGV[5]      'all': everything the consumer holds; 'leave': the same, and the consumer
--              leaves the group (it is closing); 'some': the pairs (stream number,
--              entry id) that follow
-- Only entries the consumer still holds are released: one whose lease lapsed and that
-- another consumer took over stays with that consumer. Streams of a deleted queue are
-- skipped.
-- Returns how many were released.
local group, consumer, placeholder, idle = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local PAGE = 500
local released = 0

local marker = table.remove(KEYS)
local function hand_over(key, ids)
  if #ids == 0 then return end
  if redis.call('SET', marker, '1', 'NX', 'PX', 1000) then
    redis.call('XADD', key, '*', 'w', '1')
  end
  -- JUSTID: the hand-over is not a delivery, the count stays
  local args = {key, group, placeholder, 0}
  for _, id in ipairs(ids) do args[#args + 1] = id end
  args[#args + 1] = 'IDLE'
  args[#args + 1] = idle
  args[#args + 1] = 'JUSTID'
  released = released + #redis.call('XCLAIM', unpack(args))
end

if ARGV[5] == 'all' or ARGV[5] == 'leave' then
  for _, key in ipairs(KEYS) do
    while true do
      local held = redis.pcall('XPENDING', key, group, '-', '+', PAGE, consumer)
      if held.err then break end  -- the queue was deleted: nothing held there
      local ids = {}
      for i, entry in ipairs(held) do ids[i] = entry[1] end
      hand_over(key, ids)
      if #held < PAGE then break end
    end
    if ARGV[5] == 'leave' and redis.call('EXISTS', key) == 1 then
      -- safe now: a consumer leaving with entries pending would orphan them
      redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
    end
  end
else
  for n = 6, #ARGV, 2 do
    local key, id = KEYS[tonumber(ARGV[n])], ARGV[n + 1]
    local pending = redis.pcall('XPENDING', key, group, id, id, 1)
    local entry = not pending.err and pending[1]
    if entry and entry[2] == consumer then hand_over(key, {id}) end
  end
end
return released
