-- deadBatch(tasksKey, deadKey, firstId, limit, apply): the shared walk of redrive
-- and purge. Takes the ids in ARGV[firstId..] (or, when there are none, the oldest
-- `limit` dead tasks), calls apply(id, task) for each DEAD one up to `limit`, and
-- returns { applied, dead remaining, ids that were not dead tasks ... }.
local function deadBatch(tasksKey, deadKey, firstId, limit, apply)
  local ids = {}
  if #ARGV >= firstId then
    for i = firstId, #ARGV do ids[#ids + 1] = ARGV[i] end
  else
    ids = redis.call('ZRANGE', deadKey, 0, limit - 1)
  end
  local applied = 0
  local missing = {}
  for i = 1, #ids do
    local id = ids[i]
    local raw = redis.call('HGET', tasksKey, id)
    local task = raw and cjson.decode(raw)
    if task and task.state == 'DEAD' then
      if applied < limit then
        redis.call('ZREM', deadKey, id)
        apply(id, task)
        applied = applied + 1
      end
    else
      missing[#missing + 1] = id
    end
  end
  local out = { applied, redis.call('ZCARD', deadKey) }
  for i = 1, #missing do out[#out + 1] = missing[i] end
  return out
end
