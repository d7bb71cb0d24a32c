--[[ lease: delivers up to N ready tasks of one queue, highest priority first,
FIFO within a priority, after promoting the scheduled tasks that are due.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] leased
KEYS[6] dead    KEYS[7] due (shard)
KEYS[8..17] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] max tasks   ARGV[4] lease duration (ms)
ARGV[5] promotion limit
Each delivery counts one attempt and bumps the task's lease sequence, the fencing
value its lease token carries. A READY task whose attempts are already used up
(possible only after an import) goes to the DLQ instead of being delivered. Ids
whose state is not READY are dropped from the list, never delivered.
Every step works on the whole batch at once (one LRANGE/LTRIM per non-empty
priority, one HMGET, one HSET, one ZADD), so a batch costs few commands.
Returns 4 values per delivered task: id, record JSON, state, payload
]]
-- @include "task-state"
-- @include "promote-due"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local max = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local ready = {}
for p = 0, 9 do ready[p + 1] = KEYS[8 + p] end
promoteDue(KEYS[2], KEYS[4], ready, now, tonumber(ARGV[5]))

local ids = {}
for p = 10, 1, -1 do
  local want = max - #ids
  if want <= 0 then break end
  local got = redis.call('LRANGE', ready[p], 0, want - 1)
  if #got > 0 then
    redis.call('LTRIM', ready[p], #got, -1)
    for i = 1, #got do ids[#ids + 1] = got[i] end
  end
end
if #ids == 0 then return {} end

local deadline = now + leaseMs
local states = redis.call('HMGET', KEYS[2], unpack(ids))
local writes, inflight, dead, delivered, deliveredStates = {}, {}, {}, {}, {}
local seen = {}
for i = 1, #ids do
  local s = states[i]
  -- an id listed twice (never written so, but cheap to guard) is delivered once
  if s and not seen[ids[i]] then
    seen[ids[i]] = true
    local x = parseState(s)
    if x.st == 'R' then
      x.upd = now
      if x.att >= x.max then
        x.st = 'D'
        x.untilAt = now
        if x.err == '' then x.err = 'attempts exhausted' end
        dead[#dead + 1] = now
        dead[#dead + 1] = ids[i]
      else
        x.st = 'L'
        x.att = x.att + 1
        x.seq = x.seq + 1
        x.untilAt = deadline
        x.lms = leaseMs
        inflight[#inflight + 1] = deadline
        inflight[#inflight + 1] = ids[i]
        delivered[#delivered + 1] = ids[i]
      end
      local encoded = formatState(x)
      writes[#writes + 1] = ids[i]
      writes[#writes + 1] = encoded
      if x.st == 'L' then deliveredStates[#delivered] = encoded end
    end
  end
end
if #writes > 0 then redis.call('HSET', KEYS[2], unpack(writes)) end
if #dead > 0 then redis.call('ZADD', KEYS[6], unpack(dead)) end
if #delivered == 0 then return {} end
redis.call('ZADD', KEYS[5], unpack(inflight))
lowerDue(KEYS[7], qid, deadline)
local records = redis.call('HMGET', KEYS[1], unpack(delivered))
local payloads = redis.call('HMGET', KEYS[3], unpack(delivered))
local out = {}
for i = 1, #delivered do
  out[#out + 1] = delivered[i]
  out[#out + 1] = records[i] or '{}'
  out[#out + 1] = deliveredStates[i]
  out[#out + 1] = payloads[i] or ''
end
return out
