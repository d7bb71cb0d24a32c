--[[ redrive: moves DEAD tasks of one queue back to READY with attempts reset.
KEYS[1] tasks   KEYS[2] dead   KEYS[3..12] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit   ARGV[3..] task ids (none: the oldest dead tasks, up to limit)
Returns { redriven, dead remaining, ids that were not dead tasks of this queue ... }
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[2], 0, limit - 1)
end
local redriven = 0
local missing = {}
for i = 1, #ids do
  local id = ids[i]
  local raw = redis.call('HGET', KEYS[1], id)
  local task = raw and cjson.decode(raw)
  if task and task.state == 'DEAD' and redriven < limit then
    redis.call('ZREM', KEYS[2], id)
    task.state = 'READY'
    task.attempts = 0
    task.doneAt = nil
    task.runAt = now
    task.updatedAt = now
    redis.call('HSET', KEYS[1], id, cjson.encode(task))
    redis.call('RPUSH', KEYS[3 + (tonumber(task.priority) or 0)], id)
    redriven = redriven + 1
  elseif not task or task.state ~= 'DEAD' then
    missing[#missing + 1] = id
  end
end
local out = { redriven, redis.call('ZCARD', KEYS[2]) }
for i = 1, #missing do out[#out + 1] = missing[i] end
return out
