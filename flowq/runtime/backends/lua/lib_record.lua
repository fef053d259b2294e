-- lib_record.lua: write_record() and count_progress(), shared by the scripts that write a
-- task's result record.
--
-- write_record(key, record, token, expiry, channel, terminal) writes the record
-- "<state>\n<token>\n<payload>" at key when there is none or it is not terminal (terminal
-- states are write-once), with the expiry in milliseconds ('' for none), and publishes the
-- state on channel when it is terminal. terminal is a set of state names. Returns 1 when
-- this call wrote the record, or wrote it before a reply that was lost (same token), else 0;
-- and, second, the state written when this very call wrote it (nil for a retry).
--
-- count_progress(key, state, now_ms, expiry) adds one node recorded in state to the
-- progress hash of a tracked workflow (terminal state -> count, "at" -> ms time of the last
-- one) and renews its expiry ('' for none).

local function terminal_states(names)
  local terminal = {}
  for name in string.gmatch(names, '%S+') do terminal[name] = true end
  return terminal
end

local function write_record(key, record, token, expiry, channel, terminal)
  -- State and token are all a check needs: read the head of the old record, not its payload.
  local old_state, old_token = string.match(redis.call('GETRANGE', key, 0, 127),
                                            '^([^\n]*)\n?([^\n]*)')
  if old_token == token then return 1 end
  if terminal[old_state] then return 0 end
  if expiry == '' then
    redis.call('SET', key, record)
  else
    redis.call('SET', key, record, 'PX', expiry)
  end
  local state = string.match(record, '^[^\n]*')
  if terminal[state] then redis.call('PUBLISH', channel, state) end
  return 1, state
end

local function count_progress(key, state, now_ms, expiry)
  redis.call('HINCRBY', key, state, 1)
  redis.call('HSET', key, 'at', now_ms)
  if expiry ~= '' then redis.call('PEXPIRE', key, expiry) end
end
