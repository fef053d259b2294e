-- Move one message kombu's Redis list transport held as unacked (its consumer is gone)
-- into the queue's stream, counting that delivery, if the record is still the one the
-- caller read (a consumer of the old transport that acks it meanwhile wins).
--
-- KEYS[1]      kombu's unacked hash
-- KEYS[2]      kombu's unacked index (sorted set)
-- KEYS[3]      the stream the message goes to
-- ARGV[1]      the delivery tag
-- ARGV[2]      the record as read: JSON [message, exchange, routing key]
-- ARGV[3]      the message (kombu's JSON), marked redelivered
-- Returns 1 if moved.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('XADD', KEYS[3], '*', 'm', ARGV[3], 'd', '1')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
