-- promoteDue(tasksKey, scheduledKey, ready, now, limit): moves up to `limit`
-- SCHEDULED tasks whose run-at has come to the tail of their ready list, in run-at
-- order. An id whose record is not SCHEDULED is dropped from the index, never
-- pushed: a task can be in a ready list only once. Returns the number promoted.
local function promoteDue(tasksKey, scheduledKey, ready, now, limit)
  local ids = redis.call('ZRANGEBYSCORE', scheduledKey, '-inf', now, 'LIMIT', 0, limit)
  local promoted = 0
  for i = 1, #ids do
    local id = ids[i]
    redis.call('ZREM', scheduledKey, id)
    local raw = redis.call('HGET', tasksKey, id)
    if raw then
      local task = cjson.decode(raw)
      if task.state == 'SCHEDULED' then
        task.state = 'READY'
        task.updatedAt = now
        redis.call('HSET', tasksKey, id, cjson.encode(task))
        redis.call('RPUSH', ready[(tonumber(task.priority) or 0) + 1], id)
        promoted = promoted + 1
      end
    end
  end
  return promoted
end
