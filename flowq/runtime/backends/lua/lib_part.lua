-- lib_part.lua: record_part(), shared by the scripts that record a chord part.
--
-- record_part(out, chord, token, expiry, index, part, claimant) records a member's part in
-- the chord hash (size, n: parts recorded, fired: the claimant that completed it, failed:
-- "<claimant> <token>" of the first failed member, "<index>" -> part, a part being
-- "v<value>", or "x" for a failed member), following the rules of
-- flowq.runtime.backends.base.chord_verdict: the first write of an index wins; the chord
-- completes once, for the call that recorded the last part, and again only for a retry by
-- that same claimant; a failed chord never does. token is unique to the calling store(), so
-- a retry after a lost reply gets the answers that reply carried. expiry ('' for none)
-- renews the chord's.
--
-- Appends {first_failure, lost, joined, value_0, ..., value_size-1} to out and returns it:
-- 1/0 flags, and the member values in index order only when joined is 1.

local function record_part(out, chord, token, expiry, index, part, claimant)
  local function answer(first_failure, lost, joined)
    out[#out + 1] = first_failure
    out[#out + 1] = lost
    out[#out + 1] = joined
    return out
  end
  if redis.call('EXISTS', chord) == 0 then return answer(0, 1, 0) end

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
  if expiry ~= '' then redis.call('PEXPIRE', chord, expiry) end

  local meta = redis.call('HMGET', chord, 'size', 'n', 'fired', 'failed')
  local size = tonumber(meta[1])
  if meta[4] or tonumber(meta[2]) < size then return answer(first_failure, 0, 0) end
  if not meta[3] then
    redis.call('HSET', chord, 'fired', claimant)
  elseif meta[3] ~= claimant then
    return answer(first_failure, 0, 0)
  end

  answer(0, 0, 1)
  for i = 0, size - 1 do
    out[#out + 1] = string.sub(redis.call('HGET', chord, tostring(i)), 2)
  end
  return out
end
