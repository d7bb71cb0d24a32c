--[[ import: stores tasks moved from another shard into one queue. Idempotent by
task id: a task this queue already holds is left as it is.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] scheduled   KEYS[4] dead   KEYS[5] idemidx
KEYS[6] due (shard)   KEYS[7] queues (shard)   KEYS[8..17] ready:0 .. ready:9
KEYS[18..] idempotency keys, referenced by index from the items
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] n items, then 6 values per item:
  id, record JSON (state READY, SCHEDULED or DEAD; attempts, run-at, priority and
  lease sequence as on the source), payload, idempotency KEYS index (0 = none),
  idempotency key text, idempotency expiry (ms)
The idempotency key is restored only while its window lasts and only if this shard
has not bound it to another task meanwhile.
Returns one code per item: 0 imported, 1 already present, -4 refused (state)
]]
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local n = tonumber(ARGV[3])
local out = {}
local imported = 0
for i = 0, n - 1 do
  local a = 4 + i * 6
  local id = ARGV[a]
  local task = cjson.decode(ARGV[a + 1])
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    out[#out + 1] = 1
  elseif task.state ~= 'READY' and task.state ~= 'SCHEDULED' and task.state ~= 'DEAD' then
    out[#out + 1] = -4
  else
    redis.call('HSET', KEYS[1], id, ARGV[a + 1])
    redis.call('HSET', KEYS[2], id, ARGV[a + 2])
    if task.state == 'READY' then
      redis.call('RPUSH', KEYS[8 + (tonumber(task.priority) or 0)], id)
    elseif task.state == 'SCHEDULED' then
      redis.call('ZADD', KEYS[3], task.runAt, id)
      lowerDue(KEYS[6], qid, tonumber(task.runAt))
    else
      redis.call('ZADD', KEYS[4], task.doneAt or now, id)
    end
    local idemIndex = tonumber(ARGV[a + 3])
    local expiry = tonumber(ARGV[a + 5])
    if idemIndex > 0 and expiry > now then
      local bound = redis.call('SET', KEYS[idemIndex], id, 'PX', expiry - now, 'NX')
      if bound then redis.call('ZADD', KEYS[5], expiry, ARGV[a + 4]) end
    end
    out[#out + 1] = 0
    imported = imported + 1
  end
end
if imported > 0 then redis.call('SADD', KEYS[7], qid) end
return out
