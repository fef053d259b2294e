-- How many messages of one queue are ready: never taken, released, or held by a consumer
-- whose lease lapsed (what RabbitMQ calls the queue's message count: unacked excluded).
--
-- KEYS         the queue's streams, highest priority first
-- ARGV[1]      the consumer group
-- ARGV[2]      lease in ms
local group, lease = ARGV[1], tonumber(ARGV[2])
local ready = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local pending = redis.call('XPENDING', key, group)[1]
    local lapsed = #redis.call('XPENDING', key, group, 'IDLE', lease, '-', '+', 100000)
    -- acknowledged entries are deleted, so the stream holds pending + never taken
    ready = ready + math.max(redis.call('XLEN', key) - pending, 0) + lapsed
  end
end
return ready
