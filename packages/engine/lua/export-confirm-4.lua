--[[ export-confirm: deletes reserved tasks of one queue from this shard once the
target shard has confirmed it holds them. Only ids in the `moving` set are touched.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results   KEYS[4] moving
ARGV[1..] task ids
Returns the number deleted
]]
-- @include "delete-task"
local deleted = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[4], id) == 1 then
    deleteTask(KEYS[1], KEYS[2], KEYS[3], id)
    deleted = deleted + 1
  end
end
return deleted
