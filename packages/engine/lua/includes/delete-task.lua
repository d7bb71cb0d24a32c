-- deleteTasks(K, ids): removes the records, states, payloads and results of `ids`
-- (their index entries are the caller's to remove). K: { tasks, state, payloads, results }.
local function deleteTasks(K, ids)
  if #ids == 0 then return end
  redis.call('HDEL', K.tasks, unpack(ids))
  redis.call('HDEL', K.state, unpack(ids))
  redis.call('HDEL', K.payloads, unpack(ids))
  redis.call('HDEL', K.results, unpack(ids))
end
