--[[ ack: completes deliveries of one queue.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results   KEYS[5] leased
KEYS[6] completed (a list, in completion order: the worker's clock never goes back)
ARGV[1] now (ms, 13 digits)   ARGV[2] completed retention (ms; 0 deletes the task at once)
ARGV[3] n items
ARGV[4] every item's id (26 characters), lease sequence (10 digits) and nonce (14 digits),
        concatenated (50 characters per item, in item order)
ARGV[5] m, the number of items with a result, then 2 values for each: item number (1-based), result
An ack is accepted while the task is LEASED under this delivery, even past the lease
deadline as long as the reaper has not yet taken the lease back (nobody else can
hold the task then). The payload is dropped at completion; the record, state and
result stay for the retention window.
Returns one code per item:
   0 completed     1 already completed by this same delivery (a repeated ack)
  -1 no such task  -2 stale: the task is no longer leased under this delivery
]]
-- @include "task-state"
-- @include "delete-task"
local now = ARGV[1]
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local packed = ARGV[4]
local resultOf = {}
local m = tonumber(ARGV[5])
for j = 0, m - 1 do
  resultOf[tonumber(ARGV[6 + j * 2])] = ARGV[7 + j * 2]
end
local ids = {}
for i = 0, n - 1 do ids[i + 1] = string.sub(packed, i * 50 + 1, i * 50 + 26) end
local states = redis.call('HMGET', KEYS[2], unpack(ids))
local out, done, writes, results = {}, {}, {}, {}
local taken = {}
for i = 1, n do
  local id = ids[i]
  local s = states[i]
  local seq, nonce = string.sub(packed, (i - 1) * 50 + 27, (i - 1) * 50 + 36), string.sub(packed, (i - 1) * 50 + 37, i * 50)
  if not s then
    out[i] = -1
  elseif holds(s, seq, nonce) and not taken[id] then
    taken[id] = true
    done[#done + 1] = id
    writes[#writes + 1] = id
    writes[#writes + 1] = 'C' .. string.sub(s, 2, 47) .. now .. '00000000' .. now .. string.sub(s, 82)
    if resultOf[i] then
      results[#results + 1] = id
      results[#results + 1] = resultOf[i]
    end
    out[i] = 0
  elseif sameDelivery(s, seq, nonce) and (string.byte(s, 1) == 67 or taken[id]) then
    out[i] = 1 -- 'C' under this very delivery: a repeated ack
  else
    out[i] = -2
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[5], unpack(done))
  if retention > 0 then
    redis.call('HDEL', KEYS[3], unpack(done))
    redis.call('HSET', KEYS[2], unpack(writes))
    redis.call('RPUSH', KEYS[6], unpack(done))
    if #results > 0 then redis.call('HSET', KEYS[4], unpack(results)) end
  else
    deleteTasks({ tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }, done)
  end
end
return out
