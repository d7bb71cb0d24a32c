-- refreshDue(dueKey, qid, scheduledKey, leasedKey): sets the queue's entry in the
-- shard's due index to the earliest scheduled run-at or just past the earliest lease
-- deadline (the reaper takes a lease once its deadline is before now), or removes it
-- when the queue has neither.
local function refreshDue(dueKey, qid, scheduledKey, leasedKey)
  local nextAt = nil
  local s = redis.call('ZRANGE', scheduledKey, 0, 0, 'WITHSCORES')
  if s[2] then nextAt = tonumber(s[2]) end
  local l = redis.call('ZRANGE', leasedKey, 0, 0, 'WITHSCORES')
  if l[2] and (not nextAt or tonumber(l[2]) + 1 < nextAt) then nextAt = tonumber(l[2]) + 1 end
  if nextAt then
    redis.call('ZADD', dueKey, nextAt, qid)
  else
    redis.call('ZREM', dueKey, qid)
  end
end
