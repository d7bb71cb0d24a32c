--[[ export-restore: puts every reserved task of one queue back where its state
says (an aborted move): READY at the head of its list in the original order,
SCHEDULED and DEAD into their sets.
KEYS[1] tasks   KEYS[2] scheduled   KEYS[3] dead   KEYS[4] moving   KEYS[5..14] ready:0 .. ready:9
ARGV: none
Returns the number restored
]]
local ids = redis.call('ZRANGE', KEYS[4], 0, -1)
local restored = 0
-- walk backwards so LPUSH rebuilds each list head in the original order
for i = #ids, 1, -1 do
  local id = ids[i]
  redis.call('ZREM', KEYS[4], id)
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local task = cjson.decode(raw)
    if task.state == 'READY' then
      redis.call('LPUSH', KEYS[5 + (tonumber(task.priority) or 0)], id)
    elseif task.state == 'SCHEDULED' then
      redis.call('ZADD', KEYS[2], task.runAt, id)
    elseif task.state == 'DEAD' then
      redis.call('ZADD', KEYS[3], task.doneAt or 0, id)
    end
    restored = restored + 1
  end
end
return restored
