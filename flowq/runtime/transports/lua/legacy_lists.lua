-- Move messages kombu's Redis list transport left for one queue into its streams, oldest
-- first, unchanged (an upgrade from flowq's earlier Redis transport loses nothing).
--
-- KEYS[1..10]  kombu's lists of the queue, by priority step: step 0 ("<queue>") was
--              consumed first, step k is "<queue>\x06\x16<k>"
-- KEYS[11..20] the queue's streams, highest priority first (step k -> stream k + 1)
-- ARGV[1]      the most to move in this call (the caller calls again until 0)
-- Returns how many were moved.
local limit = tonumber(ARGV[1])
local moved = 0
for step = 1, 10 do
  while moved < limit do
    local entry = redis.call('RPOP', KEYS[step])  -- kombu pushed left, popped right
    if not entry then break end
    redis.call('XADD', KEYS[10 + step], '*', 'm', entry)
    moved = moved + 1
  end
end
return moved
