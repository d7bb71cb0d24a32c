--[[ ack: completes deliveries of one queue.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results   KEYS[4] leased   KEYS[5] completed
ARGV[1] now (ms)   ARGV[2] completed retention (ms; 0 deletes the task at once)
ARGV[3] n items, then 4 values per item: id, fence (lease sequence), has result (0/1), result
An ack is accepted while the task is LEASED under this fence, even past the lease
deadline as long as the reaper has not yet taken the lease back (nobody else can
hold the task then). The payload is dropped at completion; the record and result
stay for the retention window.
Returns one code per item:
   0 completed     1 already completed by this same delivery (a repeated ack)
  -1 no such task  -2 stale: the task is no longer leased under this fence
]]
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local a = 4 + i * 4
  local id = ARGV[a]
  local fence = tonumber(ARGV[a + 1])
  local raw = redis.call('HGET', KEYS[1], id)
  if not raw then
    out[#out + 1] = -1
  else
    local task = cjson.decode(raw)
    if task.state == 'LEASED' and tonumber(task.leaseSeq) == fence then
      redis.call('ZREM', KEYS[4], id)
      redis.call('HDEL', KEYS[2], id)
      if retention > 0 then
        task.state = 'COMPLETED'
        task.doneAt = now
        task.updatedAt = now
        task.leaseDeadline = nil
        task.leaseMs = nil
        redis.call('HSET', KEYS[1], id, cjson.encode(task))
        redis.call('ZADD', KEYS[5], now, id)
        if ARGV[a + 2] == '1' then redis.call('HSET', KEYS[3], id, ARGV[a + 3]) end
      else
        redis.call('HDEL', KEYS[1], id)
      end
      out[#out + 1] = 0
    elseif task.state == 'COMPLETED' and tonumber(task.leaseSeq) == fence then
      out[#out + 1] = 1
    else
      out[#out + 1] = -2
    end
  end
end
return out
