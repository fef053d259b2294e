-- reset.lua: delete the records of tasks that resume runs again, uncounting them.
--
-- KEYS[1]        progress hash of the tracked workflow (terminal state -> nodes recorded
--                in it, "at" -> ms time of the last change); unused when ARGV[1] is ""
-- KEYS[2..n+1]   records "<state>\n<token>\n<payload>" that counted in that progress
--                (n = ARGV[2])
-- KEYS[n+2..]    other keys to delete: records that never counted (fanout items,
--                errbacks), once-only flags, delivery counters
-- ARGV[1]        now in ms when the workflow is tracked, else ""
-- ARGV[2]        n
-- ARGV[3]        the terminal state names, space separated (flowq.states.READY_STATES)
--
-- A counted record still there is deleted and its terminal state uncounted in this one
-- step, so a reset repeated after a crash (its records already gone) never uncounts twice.
-- Returns how many keys were deleted.

local terminal = {}
for name in string.gmatch(ARGV[3], '%S+') do terminal[name] = true end
local counted = tonumber(ARGV[2])
local tracked = ARGV[1] ~= '' and redis.call('EXISTS', KEYS[1]) == 1
local deleted = 0
for i = 2, #KEYS do
  if tracked and i <= counted + 1 then
    local state = string.match(redis.call('GETRANGE', KEYS[i], 0, 63), '^([^\n]*)')
    if terminal[state] then redis.call('HINCRBY', KEYS[1], state, -1) end
  end
  deleted = deleted + redis.call('DEL', KEYS[i])
end
if tracked then redis.call('HSET', KEYS[1], 'at', ARGV[1]) end
return deleted
