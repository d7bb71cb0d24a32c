--[[ redrive: moves DEAD tasks of one queue back to READY with attempts reset.
KEYS[1] tasks   KEYS[2] dead   KEYS[3..12] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit   ARGV[3..] task ids (none: the oldest dead tasks, up to limit)
Returns { redriven, dead remaining, ids that were not dead tasks of this queue ... }
]]
-- @include "dead-batch"
local now = tonumber(ARGV[1])
return deadBatch(KEYS[1], KEYS[2], 3, tonumber(ARGV[2]), function(id, task)
  task.state = 'READY'
  task.attempts = 0
  task.doneAt = nil
  task.runAt = now
  task.updatedAt = now
  redis.call('HSET', KEYS[1], id, cjson.encode(task))
  redis.call('RPUSH', KEYS[3 + (tonumber(task.priority) or 0)], id)
end)
