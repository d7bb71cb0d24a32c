--[[ redrive: moves DEAD tasks of one queue back to READY with attempts reset.
KEYS[1] state   KEYS[2] dead   KEYS[3..12] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit   ARGV[3..] task ids (the caller names the oldest when asked for them)
Returns { redriven, dead remaining, ids that were not dead tasks of this queue ... }
Run again with the same ARGV (ioredis re-sends a call whose reply a reconnect lost), a
task the first run redrove and nothing has touched since counts as redriven, so the
caller is not told it was not found and the shard worker still wakes its streams.
]]
-- @include "dead-batch"
local now = tonumber(ARGV[1])
return deadBatch(KEYS[1], KEYS[2], 3, tonumber(ARGV[2]), function(id, x)
  x.st = 'R'
  x.att = 0
  x.untilAt = 0
  x.runAt = now
  x.upd = now
  redis.call('HSET', KEYS[1], id, formatState(x))
  redis.call('RPUSH', KEYS[3 + x.pri], id)
end, function(x)
  return x.st == 'R' and x.att == 0 and x.untilAt == 0 and x.runAt == now and x.upd == now
end)
