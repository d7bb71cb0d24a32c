--[[ lease: delivers up to N ready tasks of one queue, highest priority first,
FIFO within a priority, after promoting the scheduled tasks that are due.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] scheduled   KEYS[4] leased
KEYS[5] dead    KEYS[6] due (shard)
KEYS[7..16] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] max tasks   ARGV[4] lease duration (ms)
ARGV[5] promotion limit
Each delivery counts one attempt and bumps the task's lease sequence, the fencing
value its lease token carries. A READY task whose attempts are already used up
(possible only after an import) goes to the DLQ instead of being delivered.
Returns 3 values per delivered task: id, record JSON (state LEASED), payload
]]
-- @include "promote-due"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local max = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local ready = {}
for p = 0, 9 do ready[p + 1] = KEYS[7 + p] end
promoteDue(KEYS[1], KEYS[3], ready, now, tonumber(ARGV[5]))

local out = {}
local count = 0
local deadline = now + leaseMs
for p = 10, 1, -1 do
  while count < max do
    local id = redis.call('LPOP', ready[p])
    if not id then break end
    local raw = redis.call('HGET', KEYS[1], id)
    if raw then
      local task = cjson.decode(raw)
      if task.state == 'READY' then
        if (tonumber(task.attempts) or 0) >= (tonumber(task.maxAttempts) or 1) then
          task.state = 'DEAD'
          task.doneAt = now
          task.updatedAt = now
          task.lastError = task.lastError or 'attempts exhausted'
          redis.call('ZADD', KEYS[5], now, id)
          redis.call('HSET', KEYS[1], id, cjson.encode(task))
        else
          task.state = 'LEASED'
          task.attempts = (tonumber(task.attempts) or 0) + 1
          task.leaseSeq = (tonumber(task.leaseSeq) or 0) + 1
          task.leaseDeadline = deadline
          task.leaseMs = leaseMs
          task.updatedAt = now
          local encoded = cjson.encode(task)
          redis.call('HSET', KEYS[1], id, encoded)
          redis.call('ZADD', KEYS[4], deadline, id)
          out[#out + 1] = id
          out[#out + 1] = encoded
          out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
          count = count + 1
        end
      end
    end
  end
  if count >= max then break end
end
if count > 0 then lowerDue(KEYS[6], qid, deadline) end
return out
