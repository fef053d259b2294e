-- store.lua: write a task's result record and, in the same atomic step, its chord part and
-- its count in the progress of its tracked workflow.
-- (Runs after lib_record.lua and lib_part.lua, which define write_record, count_progress and
-- record_part.)
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- KEYS[2]  chord (only with a part): the hash record_part describes
-- KEYS[#]  progress (last, only when ARGV[6] is not ""): the hash count_progress describes
-- ARGV[1]  the record "<state>\n<token>\n<payload>"
-- ARGV[2]  token: unique to this store() call, so a retry after a lost reply is recognised
-- ARGV[3]  expiry in milliseconds of the record, the chord and the progress, "" for none (the
--          chord then keeps the expiry chord_init gave it)
-- ARGV[4]  pub/sub channel to wake when the record written is terminal
-- ARGV[5]  the terminal state names, space separated (flowq.states.READY_STATES)
-- ARGV[6]  now in ms when the node belongs to a tracked workflow (KEYS[#]), else ""
-- ARGV[7]  part index               } only with a part
-- ARGV[8]  part: "v<value>" or "x"  }
-- ARGV[9]  claimant: the member's task id
--
-- A terminal record counts in the progress only when this call writes it (3 commands), so a
-- retry of this very call (same token), which writes nothing, never counts twice.
-- Returns {new, first_failure, lost, joined, value_0, ..., value_size-1}: 1/0 flags, and the
-- member values in index order only when joined is 1.

local token = ARGV[2]
local terminal = terminal_states(ARGV[5])
local new, written = write_record(KEYS[1], ARGV[1], token, ARGV[3], ARGV[4], terminal)
if written and terminal[written] and ARGV[6] ~= '' then
  count_progress(KEYS[#KEYS], written, ARGV[6], ARGV[3])
end
if not ARGV[7] then return {new, 0, 0, 0} end
return record_part({new}, KEYS[2], token, ARGV[3], ARGV[7], ARGV[8], ARGV[9])
