--[[ enqueue: stores a batch of new tasks in one queue.
KEYS[1]  tasks        KEYS[2] payloads    KEYS[3] scheduled
KEYS[4]  idemidx      KEYS[5] due (shard) KEYS[6] queues (shard)
KEYS[7..16]  ready:0 .. ready:9
KEYS[17..]   idempotency keys, referenced by index from the items
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] idempotency window (ms)   ARGV[4] n items
then 7 values per item:
  id, priority (0..9), run-at (ms), record JSON (state READY or SCHEDULED),
  payload, idempotency KEYS index (0 = none), idempotency key text
Returns 3 values per item: task id, code, state
  code  0  stored
  code  1  duplicate: the idempotency key is live; the id and state are the original's
           (state "" when the original's record is gone after retention)
  code -5  refused: a task with this id exists (nothing written for the item)
]]
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local window = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local out = {}
local stored = 0
for i = 0, n - 1 do
  local a = 5 + i * 7
  local id = ARGV[a]
  local priority = tonumber(ARGV[a + 1])
  local runAt = tonumber(ARGV[a + 2])
  local record = ARGV[a + 3]
  local payload = ARGV[a + 4]
  local idemIndex = tonumber(ARGV[a + 5])
  local idemKey = ARGV[a + 6]
  local done = false
  if idemIndex > 0 then
    local original = redis.call('GET', KEYS[idemIndex])
    if original then
      local raw = redis.call('HGET', KEYS[1], original)
      local state = ''
      if raw then state = cjson.decode(raw).state end
      out[#out + 1] = original
      out[#out + 1] = 1
      out[#out + 1] = state
      done = true
    end
  end
  if not done then
    if redis.call('HSETNX', KEYS[1], id, record) == 0 then
      out[#out + 1] = id
      out[#out + 1] = -5
      out[#out + 1] = ''
    else
      redis.call('HSET', KEYS[2], id, payload)
      if idemIndex > 0 then
        redis.call('SET', KEYS[idemIndex], id, 'PX', window)
        redis.call('ZADD', KEYS[4], now + window, idemKey)
      end
      local state
      if runAt > now then
        state = 'SCHEDULED'
        redis.call('ZADD', KEYS[3], runAt, id)
        lowerDue(KEYS[5], qid, runAt)
      else
        state = 'READY'
        redis.call('RPUSH', KEYS[7 + priority], id)
      end
      out[#out + 1] = id
      out[#out + 1] = 0
      out[#out + 1] = state
      stored = stored + 1
    end
  end
end
if stored > 0 then redis.call('SADD', KEYS[6], qid) end
return out
