--[[ purge: deletes DEAD tasks of one queue for good.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results   KEYS[4] dead
ARGV[1] limit   ARGV[2..] task ids (none: the oldest dead tasks, up to limit)
Returns { purged, dead remaining, ids that were not dead tasks of this queue ... }
]]
-- @include "dead-batch"
-- @include "delete-task"
return deadBatch(KEYS[1], KEYS[4], 2, tonumber(ARGV[1]), function(id)
  deleteTask(KEYS[1], KEYS[2], KEYS[3], id)
end)
