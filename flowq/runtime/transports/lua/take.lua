-- Settle acknowledged messages of one queue, then take up to COUNT more for a consumer,
-- highest priority first. Taking is what the consumer group records atomically: a taken
-- message is in the group's pending list under the consumer's name until acknowledged,
-- released, or taken over once its lease lapsed; nothing is ever in between.
--
-- KEYS         the queue's streams, highest priority first
-- ARGV[1]      the consumer group
-- ARGV[2]      the consumer taking
-- ARGV[3]      how many to take (0: only settle)
-- ARGV[4]      lease in ms; if > 0, messages held that long without renewal (their
--              holder's lease lapsed) and released ones are taken first, per priority
-- ARGV[5]      how many acknowledgements follow, then pairs (stream number, entry id)
-- Acknowledged entries are deleted (XACK + XDEL): a stream keeps only live messages.
-- The streams of a deleted queue give nothing (its consumers declare it again).
-- Returns a flat list of (stream number, entry id, deliveries, fields) per message taken.
local group, consumer = ARGV[1], ARGV[2]
local want, lease, acks = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local CHUNK = 500  -- ids per command: unpack() of a long list would overflow Lua's stack

local function each_chunk(ids, fn)
  for first = 1, #ids, CHUNK do
    fn(unpack(ids, first, math.min(first + CHUNK - 1, #ids)))
  end
end

local settled = {}
for n = 6, 5 + 2 * acks, 2 do
  local i = tonumber(ARGV[n])
  settled[i] = settled[i] or {}
  table.insert(settled[i], ARGV[n + 1])
end
for i, ids in pairs(settled) do
  each_chunk(ids, function(...) redis.call('XACK', KEYS[i], group, ...) end)
  each_chunk(ids, function(...) redis.call('XDEL', KEYS[i], ...) end)
end

local out = {}
local function taken(i, id, deliveries, fields)
  out[#out + 1] = i
  out[#out + 1] = id
  out[#out + 1] = deliveries
  out[#out + 1] = fields
  want = want - 1
end

for i, key in ipairs(KEYS) do
  if want <= 0 then break end
  if lease > 0 then
    -- {id, holder, idle ms, deliveries}; the consumer's own entries are left to its
    -- heartbeat (taking one again would hand it a second copy of what it holds)
    local lapsed = redis.pcall('XPENDING', key, group, 'IDLE', lease, '-', '+', want + 50)
    if lapsed.err then return out end
    local ids, deliveries = {}, {}
    for _, entry in ipairs(lapsed) do
      if entry[2] ~= consumer and #ids < want then
        ids[#ids + 1] = entry[1]
        deliveries[entry[1]] = entry[4]
      end
    end
    if #ids > 0 then
      -- the same min-idle: an entry renewed since XPENDING is not taken
      for _, entry in ipairs(redis.call('XCLAIM', key, group, consumer, lease, unpack(ids))) do
        if entry and entry[2] then taken(i, entry[1], deliveries[entry[1]] + 1, entry[2]) end
      end
    end
  end
  if want > 0 then
    local got = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
                            'STREAMS', key, '>')
    if type(got) == 'table' and got.err then return out end
    if got then
      for _, entry in ipairs(got[1][2]) do taken(i, entry[1], 1, entry[2]) end
    end
  end
end
return out
