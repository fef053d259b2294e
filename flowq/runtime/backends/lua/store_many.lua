-- store_many.lua: write terminal records that are missing, and count them for their workflow.
--
-- KEYS[1..n]  results: strings "<state>\n<token>\n<payload>", written only where missing
-- KEYS[n+1]   progress (only when ARGV[2] is not ""): hash of the tracked workflow's terminal
--             state -> nodes recorded in it, and "at" -> ms time of the last one
-- ARGV[1]     expiry in milliseconds of the records and the progress, "" for none
-- ARGV[2]     now in ms when the records belong to a tracked workflow, else ""
-- ARGV[3..]   per record: the record, its state, its pub/sub channel (3 values each)
--
-- Every channel is published to, written or not: a waiter reads the record it is woken for.
-- The counts and the writes happen together, so a retry after a lost reply (every record
-- then exists) counts nothing again. Returns how many records were written.

local written, counted = 0, {}
for i = 1, (#ARGV - 2) / 3 do
  local record, state, channel = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local set
  if ARGV[1] == '' then
    set = redis.call('SET', KEYS[i], record, 'NX')
  else
    set = redis.call('SET', KEYS[i], record, 'NX', 'PX', ARGV[1])
  end
  if set then
    written = written + 1
    counted[state] = (counted[state] or 0) + 1
  end
  redis.call('PUBLISH', channel, state)
end
if ARGV[2] ~= '' and written > 0 then
  local progress = KEYS[#KEYS]
  for state, n in pairs(counted) do redis.call('HINCRBY', progress, state, n) end
  redis.call('HSET', progress, 'at', ARGV[2])
  if ARGV[1] ~= '' then redis.call('PEXPIRE', progress, ARGV[1]) end
end
return written
