-- store_part.lua: on a Redis Cluster, record a chord part (after store_record.lua wrote the
-- member's record in the member's slot). (Runs after lib_part.lua, which defines record_part.)
--
-- KEYS[1]  chord: the hash record_part describes
-- ARGV[1]  token of the store() call (the same as store_record.lua's)
-- ARGV[2]  expiry in milliseconds, "" for none
-- ARGV[3]  part index
-- ARGV[4]  part: "v<value>" or "x", as store_record.lua returned it
-- ARGV[5]  claimant: the member's task id
--
-- Returns {first_failure, lost, joined, value_0, ..., value_size-1}, as store.lua does.

return record_part({}, KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
