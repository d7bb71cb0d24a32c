--[[ cleanup: retention of one queue. Deletes COMPLETED tasks older than their
window, DEAD tasks older than theirs, and forgets expired idempotency keys (the
keys themselves expire on their own).
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results   KEYS[4] completed   KEYS[5] dead
KEYS[6] idemidx
ARGV[1] now (ms)   ARGV[2] completed retention (ms)   ARGV[3] dead retention (ms)
ARGV[4] limit per kind
Only a record still in the expected state is deleted.
Returns { completed deleted, dead deleted, idempotency keys forgotten }
]]
-- @include "delete-task"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
local function sweep(indexKey, cutoff, state)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[indexKey], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  local deleted = 0
  for i = 1, #ids do
    local id = ids[i]
    redis.call('ZREM', KEYS[indexKey], id)
    local raw = redis.call('HGET', KEYS[1], id)
    if raw and cjson.decode(raw).state == state then
      deleteTask(KEYS[1], KEYS[2], KEYS[3], id)
      deleted = deleted + 1
    end
  end
  return deleted
end
local completed = sweep(4, now - tonumber(ARGV[2]), 'COMPLETED')
local dead = sweep(5, now - tonumber(ARGV[3]), 'DEAD')
local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. now, 'LIMIT', 0, limit)
for i = 1, #expired do redis.call('ZREM', KEYS[6], expired[i]) end
return { completed, dead, #expired }
