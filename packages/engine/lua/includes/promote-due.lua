-- promoteDue(stateKey, scheduledKey, ready, now, limit): moves up to `limit`
-- SCHEDULED tasks whose run-at has come to the tail of their ready list, in run-at
-- order. An id whose state is not SCHEDULED is dropped from the index, never
-- pushed: a task can be in a ready list only once. Returns the number promoted.
-- @include "task-state"
local function promoteDue(stateKey, scheduledKey, ready, now, limit)
  local ids = redis.call('ZRANGEBYSCORE', scheduledKey, '-inf', now, 'LIMIT', 0, limit)
  if #ids == 0 then return 0 end
  local states = redis.call('HMGET', stateKey, unpack(ids))
  local nowText = string.format('%013d', now)
  local writes = {}
  local byPriority = {}
  for i = 1, #ids do
    local s = states[i]
    if s and string.byte(s, 1) == 83 then -- 'S'
      writes[#writes + 1] = ids[i]
      writes[#writes + 1] = 'R' .. string.sub(s, 2, 68) .. nowText .. string.sub(s, 82)
      local p = string.byte(s, 2) - 47
      local list = byPriority[p]
      if not list then
        list = {}
        byPriority[p] = list
      end
      list[#list + 1] = ids[i]
    end
  end
  -- the index entries go last: a script that fails half-way is not rolled back, and a
  -- task must never be left SCHEDULED in no index (the caller keeps `limit` to MAX_BATCH)
  if #writes > 0 then
    redis.call('HSET', stateKey, unpack(writes))
    for p, list in pairs(byPriority) do redis.call('RPUSH', ready[p], unpack(list)) end
  end
  redis.call('ZREM', scheduledKey, unpack(ids))
  return #writes / 2
end
