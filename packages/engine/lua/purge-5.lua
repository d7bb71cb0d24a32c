--[[ purge: deletes DEAD tasks of one queue for good.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results   KEYS[5] dead
ARGV[1] limit   ARGV[2..] task ids (the caller names the oldest when asked for them)
Returns { purged, dead remaining, ids that were not dead tasks of this queue ... }
]]
-- @include "dead-batch"
-- @include "delete-task"
local K = { tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }
return deadBatch(KEYS[2], KEYS[5], 2, tonumber(ARGV[1]), function(id)
  deleteTasks(K, { id })
end)
