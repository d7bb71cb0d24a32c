-- deleteTask(tasksKey, payloadsKey, resultsKey, id): removes a task's record,
-- payload and result (its index entries are the caller's to remove).
local function deleteTask(tasksKey, payloadsKey, resultsKey, id)
  redis.call('HDEL', tasksKey, id)
  redis.call('HDEL', payloadsKey, id)
  redis.call('HDEL', resultsKey, id)
end
