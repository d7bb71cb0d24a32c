-- lowerDue(dueKey, qid, at): makes the shard's due index point at this queue no
-- later than `at` (ms). Written out instead of ZADD LT to stay within commands
-- every KVRocks version supports.
local function lowerDue(dueKey, qid, at)
  local current = redis.call('ZSCORE', dueKey, qid)
  if not current or tonumber(current) > at then
    redis.call('ZADD', dueKey, at, qid)
  end
end
