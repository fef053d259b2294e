-- store.lua: write a task's result record and, in the same atomic step, its chord part.
--
-- KEYS[1]  result: string "<state>\n<token>\n<payload>"
-- KEYS[2]  chord (only with a part): hash of size, n (parts recorded), fired (the claimant
--          that completed it), failed ("<claimant> <token>" of the first failed member) and
--          "<index>" -> part, a part being "v<value>", or "x" for a failed member
-- KEYS[#]  progress (last, only when ARGV[6] is not ""): hash of the tracked workflow's
--          terminal state -> nodes recorded in it, and "at" -> ms time of the last one
-- ARGV[1]  the record "<state>\n<token>\n<payload>"
-- ARGV[2]  token: unique to this store() call, so a retry after a lost reply is recognised
-- ARGV[3]  expiry in milliseconds of the record and the chord, "" for none (the chord then
--          keeps the expiry chord_init gave it)
-- ARGV[4]  pub/sub channel to wake when the record written is terminal
-- ARGV[5]  the terminal state names, space separated (flowq.states.READY_STATES)
-- ARGV[6]  now in ms when the node belongs to a tracked workflow (KEYS[#]), else ""
-- ARGV[7]  part index               } only with a part
-- ARGV[8]  part: "v<value>" or "x"  }
-- ARGV[9]  claimant: the member's task id
--
-- The record is written when there is none or it is not terminal, so terminal states are
-- write-once; writing a terminal one counts it in the progress hash (3 commands: HINCRBY,
-- HSET, PEXPIRE), which a retry (same token) therefore never does twice. The part follows the rules of flowq.runtime.backends.base.chord_verdict: the
-- first write of an index wins; the chord completes once, for the call that recorded the
-- last part, and again only for a retry by that same claimant; a failed chord never does.
-- A retry of this very call (same token) gets the answers the lost reply carried.
--
-- Returns {new, first_failure, lost, joined, value_0, ..., value_size-1}: 1/0 flags, and the
-- member values in index order only when joined is 1.

local token = ARGV[2]
local terminal = {}
for name in string.gmatch(ARGV[5], '%S+') do terminal[name] = true end

-- State and token are all a check needs: read the head of the old record, not its payload.
local old_state, old_token = string.match(redis.call('GETRANGE', KEYS[1], 0, 127),
                                          '^([^\n]*)\n?([^\n]*)')
local new = 0
if old_token == token then
  new = 1
elseif not terminal[old_state] then
  if ARGV[3] == '' then
    redis.call('SET', KEYS[1], ARGV[1])
  else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  end
  new = 1
  local state = string.match(ARGV[1], '^[^\n]*')
  if terminal[state] then
    redis.call('PUBLISH', ARGV[4], state)
    if ARGV[6] ~= '' then
      local progress = KEYS[#KEYS]
      redis.call('HINCRBY', progress, state, 1)
      redis.call('HSET', progress, 'at', ARGV[6])
      if ARGV[3] ~= '' then redis.call('PEXPIRE', progress, ARGV[3]) end
    end
  end
end

if not ARGV[7] then return {new, 0, 0, 0} end
local chord = KEYS[2]
if redis.call('EXISTS', chord) == 0 then return {new, 0, 1, 0} end

local index, part, claimant = ARGV[7], ARGV[8], ARGV[9]
local inserted = redis.call('HSETNX', chord, index, part) == 1
if inserted then redis.call('HINCRBY', chord, 'n', 1) end
local first_failure = 0
if part == 'x' then
  local mark = claimant .. ' ' .. token
  if (inserted and redis.call('HSETNX', chord, 'failed', mark) == 1)
      or redis.call('HGET', chord, 'failed') == mark then
    first_failure = 1
  end
end
if ARGV[3] ~= '' then redis.call('PEXPIRE', chord, ARGV[3]) end

local meta = redis.call('HMGET', chord, 'size', 'n', 'fired', 'failed')
local size = tonumber(meta[1])
if meta[4] or tonumber(meta[2]) < size then return {new, first_failure, 0, 0} end
if not meta[3] then
  redis.call('HSET', chord, 'fired', claimant)
elseif meta[3] ~= claimant then
  return {new, first_failure, 0, 0}
end

local out = {new, 0, 0, 1}
for i = 0, size - 1 do
  out[#out + 1] = string.sub(redis.call('HGET', chord, tostring(i)), 2)
end
return out
