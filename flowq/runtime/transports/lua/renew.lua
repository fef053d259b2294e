-- A consumer's heartbeat on one queue: renew the lease of every message it holds (their
-- idle time goes back to 0; their delivery count stays).
--
-- KEYS         the queue's streams, highest priority first
-- ARGV[1]      the consumer group
-- ARGV[2]      the consumer
-- Returns how many messages it holds.
local group, consumer = ARGV[1], ARGV[2]
local PAGE = 500
local held_total = 0
for _, key in ipairs(KEYS) do
  local start = '-'
  while true do
    local held = redis.pcall('XPENDING', key, group, start, '+', PAGE, consumer)
    if held.err or #held == 0 then break end  -- (err: the queue was deleted)
    local args = {key, group, consumer, 0}
    for _, entry in ipairs(held) do args[#args + 1] = entry[1] end
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', unpack(args))
    held_total = held_total + #held
    if #held < PAGE then break end
    start = '(' .. held[#held][1]
  end
end
return held_total
