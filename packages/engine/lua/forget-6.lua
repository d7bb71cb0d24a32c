--[[ forget: takes a queue out of the shard's queue registry when it holds nothing:
no task, no idempotency key, no mover's reservation, and no id left in its completed
list or dead index (those hold ids only of tasks that exist, and are checked so that
an id a store left behind is swept by cleanup before the queue is forgotten). Its
next enqueue, import or moved idempotency key registers it again; the check and the
removal are one atomic step against those.
KEYS[1] state   KEYS[2] idemidx   KEYS[3] completed   KEYS[4] dead   KEYS[5] moving
KEYS[6] queues (shard)
ARGV[1] queue id
Returns 1 when the queue left the registry, else 0
]]
-- counts, not EXISTS: whether a store keeps an emptied key is its own affair
if redis.call('HLEN', KEYS[1]) > 0 or redis.call('ZCARD', KEYS[2]) > 0 or redis.call('LLEN', KEYS[3]) > 0
    or redis.call('ZCARD', KEYS[4]) > 0 or redis.call('ZCARD', KEYS[5]) > 0 then
  return 0
end
return redis.call('SREM', KEYS[6], ARGV[1])
