--[[ purge: deletes DEAD tasks of one queue for good.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results   KEYS[4] dead
ARGV[1] limit   ARGV[2..] task ids (none: the oldest dead tasks, up to limit)
Returns { purged, dead remaining, ids that were not dead tasks of this queue ... }
]]
local limit = tonumber(ARGV[1])
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[4], 0, limit - 1)
end
local purged = 0
local missing = {}
for i = 1, #ids do
  local id = ids[i]
  local raw = redis.call('HGET', KEYS[1], id)
  local task = raw and cjson.decode(raw)
  if task and task.state == 'DEAD' and purged < limit then
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    purged = purged + 1
  elseif not task or task.state ~= 'DEAD' then
    missing[#missing + 1] = id
  end
end
local out = { purged, redis.call('ZCARD', KEYS[4]) }
for i = 1, #missing do out[#out + 1] = missing[i] end
return out
