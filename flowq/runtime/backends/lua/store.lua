-- store.lua: write a task's result record and, in the same atomic step, its chord part.
-- (Runs after lib_record.lua and lib_part.lua, which define write_record and record_part.)
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- KEYS[2]  chord (only with a part): the hash record_part describes
-- ARGV[1]  the record "<state>\n<token>\n<payload>"
-- ARGV[2]  token: unique to this store() call, so a retry after a lost reply is recognised
-- ARGV[3]  expiry in milliseconds of the record and the chord, "" for none (the chord then
--          keeps the expiry chord_init gave it)
-- ARGV[4]  pub/sub channel to wake when the record written is terminal
-- ARGV[5]  the terminal state names, space separated (flowq.states.READY_STATES)
-- ARGV[6]  part index               } only with a part
-- ARGV[7]  part: "v<value>" or "x"  }
-- ARGV[8]  claimant: the member's task id
--
-- Returns {new, first_failure, lost, joined, value_0, ..., value_size-1}: 1/0 flags, and the
-- member values in index order only when joined is 1.

local token = ARGV[2]
local new = write_record(KEYS[1], ARGV[1], token, ARGV[3], ARGV[4], terminal_states(ARGV[5]))
if not KEYS[2] then return {new, 0, 0, 0} end
return record_part({new}, KEYS[2], token, ARGV[3], ARGV[6], ARGV[7], ARGV[8])
