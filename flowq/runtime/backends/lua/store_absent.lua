-- store_absent.lua: on a Redis Cluster, write a terminal record unless the task has one,
-- and wake its waiters; store_many runs it once per record, pipelined per node (a single
-- server pipelines SET NX and PUBLISH instead, which a cluster pipeline cannot carry).
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- ARGV[1]  the record
-- ARGV[2]  expiry in milliseconds, "" for none
-- ARGV[3]  pub/sub channel of the task
-- ARGV[4]  the record's (terminal) state
--
-- Publishes whether or not it wrote: a waiter reads the record it is woken for.
-- Returns 1 when it wrote the record, else 0.

local written
if ARGV[2] == '' then
  written = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  written = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return written and 1 or 0
