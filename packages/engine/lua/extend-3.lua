--[[ extend: pushes lease deadlines of one queue further out.
KEYS[1] state   KEYS[2] leased   KEYS[3] due (shard)
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] n items, then 4 values per item:
  id, lease sequence (10 digits), nonce (14 digits), lease duration ms (0 = the duration the task was leased with)
A lease whose deadline has passed is never revived, even before the reaper saw it.
A shorter lease lowers the queue's entry in the due index, so the reaper is not late.
Returns 2 values per item: code, new deadline (ms; 0 when refused)
   0 extended   -1 no such task   -2 stale: no longer leased under this delivery
  -3 expired: the lease deadline has passed
]]
-- @include "task-state"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local n = tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local a = 4 + i * 4
  local id = ARGV[a]
  local s = redis.call('HGET', KEYS[1], id)
  if not s then
    out[#out + 1] = -1
    out[#out + 1] = 0
  else
    local x = parseState(s)
    if not holds(s, ARGV[a + 1], ARGV[a + 2]) then
      out[#out + 1] = -2
      out[#out + 1] = 0
    elseif x.untilAt < now then
      out[#out + 1] = -3
      out[#out + 1] = 0
    else
      local duration = tonumber(ARGV[a + 3])
      if duration <= 0 then duration = x.lms end
      x.untilAt = now + duration
      x.lms = duration
      x.upd = now
      redis.call('HSET', KEYS[1], id, formatState(x))
      redis.call('ZADD', KEYS[2], x.untilAt, id)
      lowerDue(KEYS[3], qid, x.untilAt + 1) -- reapable just past its deadline
      out[#out + 1] = 0
      out[#out + 1] = x.untilAt
    end
  end
end
return out
