-- store_record.lua: on a Redis Cluster, write a task's result record and remember the chord
-- part it implies; store_part.lua then records that part in the chord's own slot.
-- (Runs after lib_record.lua, which defines write_record.)
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- KEYS[2]  part intent (only with a part; same slot as KEYS[1]): the part of the first
--          terminal record of this task
-- ARGV[1..5]  as in store.lua: record, token, expiry ("" for none), channel, terminal states
-- ARGV[6]  this call's part: "v<value>" or "x" (only with a part)
--
-- Returns {new, part, written}: new is 1 when this call wrote the record (see write_record);
-- part is the part to record: this call's when it wrote the record, else the intent of the
-- call that did (so a worker that records a lost child's failure after the child stored a
-- success counts the success), else this call's; written is 1 when this very call (not a
-- retry of it) wrote a terminal record, which then counts in a tracked workflow's progress.

local terminal = terminal_states(ARGV[5])
local new, state = write_record(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], terminal)
local written = (state and terminal[state]) and 1 or 0
if not KEYS[2] then return {new, false, written} end
if new == 1 then
  if ARGV[3] == '' then
    redis.call('SET', KEYS[2], ARGV[6])
  else
    redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[3])
  end
  return {new, ARGV[6], written}
end
return {new, redis.call('GET', KEYS[2]) or ARGV[6], written}
