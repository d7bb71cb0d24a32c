--[[ export-confirm: deletes reserved tasks of one queue from this shard once the
target shard has confirmed it holds them. Only ids in the `moving` set are touched.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results   KEYS[5] moving
ARGV[1..] task ids
Returns the number deleted
]]
-- @include "delete-task"
local doomed = {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[5], ARGV[i]) == 1 then doomed[#doomed + 1] = ARGV[i] end
end
deleteTasks({ tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }, doomed)
return #doomed
