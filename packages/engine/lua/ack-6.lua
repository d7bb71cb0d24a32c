--[[ ack: completes deliveries of one queue.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results   KEYS[5] leased
KEYS[6] completed
ARGV[1] now (ms)   ARGV[2] completed retention (ms; 0 deletes the task at once)
ARGV[3] n items, then 4 values per item: id, fence (lease sequence), has result (0/1), result
An ack is accepted while the task is LEASED under this fence, even past the lease
deadline as long as the reaper has not yet taken the lease back (nobody else can
hold the task then). The payload is dropped at completion; the record, state and
result stay for the retention window.
Returns one code per item:
   0 completed     1 already completed by this same delivery (a repeated ack)
  -1 no such task  -2 stale: the task is no longer leased under this fence
]]
-- @include "task-state"
-- @include "delete-task"
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local ids = {}
for i = 0, n - 1 do ids[#ids + 1] = ARGV[4 + i * 4] end
local states = redis.call('HMGET', KEYS[2], unpack(ids))
local out, done, writes, completed, results = {}, {}, {}, {}, {}
local taken = {}
for i = 1, n do
  local a = 4 + (i - 1) * 4
  local id = ids[i]
  local s = states[i]
  if not s then
    out[i] = -1
  else
    local x = parseState(s)
    local fence = tonumber(ARGV[a + 1])
    if x.st == 'L' and x.seq == fence and not taken[id] then
      taken[id] = true
      x.st = 'C'
      x.untilAt = now
      x.lms = 0
      x.upd = now
      done[#done + 1] = id
      writes[#writes + 1] = id
      writes[#writes + 1] = formatState(x)
      completed[#completed + 1] = now
      completed[#completed + 1] = id
      if ARGV[a + 2] == '1' then
        results[#results + 1] = id
        results[#results + 1] = ARGV[a + 3]
      end
      out[i] = 0
    elseif (x.st == 'C' and x.seq == fence) or (taken[id] and x.seq == fence) then
      out[i] = 1
    else
      out[i] = -2
    end
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[5], unpack(done))
  if retention > 0 then
    redis.call('HDEL', KEYS[3], unpack(done))
    redis.call('HSET', KEYS[2], unpack(writes))
    redis.call('ZADD', KEYS[6], unpack(completed))
    if #results > 0 then redis.call('HSET', KEYS[4], unpack(results)) end
  else
    deleteTasks({ tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }, done)
  end
end
return out
