--[[ cleanup: retention of one queue. Deletes COMPLETED tasks older than their
window, DEAD tasks older than theirs, and forgets expired idempotency keys (the
keys themselves expire on their own). A queue left with no task, no idempotency
key and nothing reserved by the mover leaves the shard's queue registry, so that
the background loops and metrics of a shard whose tenants come and go do not
visit every queue it ever had; its next enqueue or import adds it again.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results
KEYS[5] completed (a list in completion order)   KEYS[6] dead   KEYS[7] idemidx
KEYS[8] moving   KEYS[9] queues (shard)
ARGV[1] now (ms)   ARGV[2] completed retention (ms)   ARGV[3] dead retention (ms)
ARGV[4] limit per kind   ARGV[5] queue id
Only a task still in the expected state is deleted.
Returns { completed deleted, dead deleted, idempotency keys forgotten, 1 when the
queue left the registry (else 0) }
]]
-- @include "task-state"
-- @include "delete-task"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
local K = { tasks = KEYS[1], state = KEYS[2], payloads = KEYS[3], results = KEYS[4] }
local function sweep(indexKey, cutoff, st)
  local ids = redis.call('ZRANGEBYSCORE', indexKey, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  if #ids == 0 then return 0 end
  redis.call('ZREM', indexKey, unpack(ids))
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  local doomed = {}
  for i = 1, #ids do
    if states[i] and string.sub(states[i], 1, 1) == st then doomed[#doomed + 1] = ids[i] end
  end
  deleteTasks(K, doomed)
  return #doomed
end
-- completed tasks: from the head of the list while they are older than the window
local completed = 0
local cutoff = string.format('%013d', now - tonumber(ARGV[2]))
local head = redis.call('LRANGE', KEYS[5], 0, limit - 1)
if #head > 0 then
  local states = redis.call('HMGET', KEYS[2], unpack(head))
  local doomed, taken = {}, 0
  for i = 1, #head do
    local s = states[i]
    local done = s and string.byte(s, 1) == 67
    if done and string.sub(s, 48, 60) >= cutoff then break end
    taken = i
    if done then doomed[#doomed + 1] = head[i] end
  end
  if taken > 0 then redis.call('LTRIM', KEYS[5], taken, -1) end
  deleteTasks(K, doomed)
  completed = #doomed
end
local dead = sweep(KEYS[6], now - tonumber(ARGV[3]), 'D')
local expired = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', '(' .. now, 'LIMIT', 0, limit)
if #expired > 0 then redis.call('ZREM', KEYS[7], unpack(expired)) end
-- counts, not EXISTS: whether a store keeps an emptied key is its own affair
local forgotten = 0
if redis.call('HLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[7]) == 0 and redis.call('LLEN', KEYS[5]) == 0
    and redis.call('ZCARD', KEYS[6]) == 0 and redis.call('ZCARD', KEYS[8]) == 0 then
  forgotten = redis.call('SREM', KEYS[9], ARGV[5])
end
return { completed, dead, #expired, forgotten }
