--[[ export-confirm: deletes reserved tasks of one queue from this shard once the
target shard has confirmed it holds them. Only ids in the `moving` set are touched.
On an abort's trip home (ARGV[1] = 1) the ids also leave `landed`, the set of the ids
the aborted migration's imports stored here: they are the source's again, and a
HeldTasks asked of this shard must not count them as held here (the source would
delete its copy of a task it reserved again, and none would be left).
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results   KEYS[5] moving
KEYS[6] landed (of the migration sending them home; unused when ARGV[1] is 0)
ARGV[1] 1 = an abort's trip home, 0 = not   ARGV[2..] task ids
Returns the number deleted
]]
-- @include "delete-task"
local doomed = {}
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[5], ARGV[i]) == 1 then doomed[#doomed + 1] = ARGV[i] end
end
deleteTasks({ tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }, doomed)
if ARGV[1] == '1' and #doomed > 0 then redis.call('SREM', KEYS[6], unpack(doomed)) end
return #doomed
