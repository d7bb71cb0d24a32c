--[[ enqueue: stores a batch of new tasks in one queue.
KEYS[1]  tasks      KEYS[2] state       KEYS[3] payloads   KEYS[4] scheduled
KEYS[5]  idemidx    KEYS[6] due (shard) KEYS[7] queues (shard)
KEYS[8..17]  ready:0 .. ready:9
KEYS[18..]   idempotency keys, referenced by index from the items
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] idempotency window (ms)   ARGV[4] n items
then 8 values per item:
  id, priority (0..9), run-at (ms), record JSON, state (R or S, see task-state.lua),
  payload, idempotency KEYS index (0 = none), idempotency key text
Returns 3 values per item: task id, code, state name
  code  0  stored
  code  1  duplicate: the idempotency key is live; the id and state are the original's
           (state "" when the original is gone after retention)
  code -5  refused: a task with this id exists (nothing written for the item)
]]
-- @include "task-state"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local window = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local ids = {}
for i = 0, n - 1 do ids[#ids + 1] = ARGV[5 + i * 8] end
local existing = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
local records, states, payloads, scheduled = {}, {}, {}, {}
local byPriority = {}
local seen = {}
local pending = {}
for i = 0, n - 1 do
  local a = 5 + i * 8
  local id = ARGV[a]
  local priority = tonumber(ARGV[a + 1])
  local runAt = tonumber(ARGV[a + 2])
  local idemIndex = tonumber(ARGV[a + 6])
  local original = nil
  if idemIndex > 0 then original = redis.call('GET', KEYS[idemIndex]) end
  if original then
    -- the original may be an earlier item of this very batch, not yet written
    local s = redis.call('HGET', KEYS[2], original)
    out[#out + 1] = original
    out[#out + 1] = 1
    out[#out + 1] = pending[original] or (s and STATE_NAMES[string.sub(s, 1, 1)]) or ''
  elseif existing[i + 1] or seen[id] then
    out[#out + 1] = id
    out[#out + 1] = -5
    out[#out + 1] = ''
  else
    seen[id] = true
    records[#records + 1] = id
    records[#records + 1] = ARGV[a + 3]
    states[#states + 1] = id
    states[#states + 1] = ARGV[a + 4]
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = ARGV[a + 5]
    if idemIndex > 0 then
      redis.call('SET', KEYS[idemIndex], id, 'PX', window)
      redis.call('ZADD', KEYS[5], now + window, ARGV[a + 7])
    end
    out[#out + 1] = id
    out[#out + 1] = 0
    if runAt > now then
      scheduled[#scheduled + 1] = runAt
      scheduled[#scheduled + 1] = id
      lowerDue(KEYS[6], qid, runAt)
      out[#out + 1] = 'SCHEDULED'
      pending[id] = 'SCHEDULED'
    else
      local list = byPriority[priority + 1]
      if not list then
        list = {}
        byPriority[priority + 1] = list
      end
      list[#list + 1] = id
      out[#out + 1] = 'READY'
      pending[id] = 'READY'
    end
  end
end
if #records > 0 then
  redis.call('HSET', KEYS[1], unpack(records))
  redis.call('HSET', KEYS[2], unpack(states))
  redis.call('HSET', KEYS[3], unpack(payloads))
  if #scheduled > 0 then redis.call('ZADD', KEYS[4], unpack(scheduled)) end
  for p, list in pairs(byPriority) do redis.call('RPUSH', KEYS[7 + p], unpack(list)) end
  redis.call('SADD', KEYS[7], qid)
end
return out
