--[[ cleanup: retention of one queue. Deletes COMPLETED tasks older than their
window, DEAD tasks older than theirs, and forgets expired idempotency keys (the
keys themselves expire on their own). Also says whether the queue is left with
nothing at all, for forget-6.lua (a script of its own, so that this one, which may
delete thousands of tasks, never holds the shard-wide registry every enqueue writes).
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results
KEYS[5] completed (a list in completion order)   KEYS[6] dead   KEYS[7] idemidx
ARGV[1] now (ms)   ARGV[2] completed retention (ms)   ARGV[3] dead retention (ms)
ARGV[4] limit per kind
Only a task still in the expected state is deleted.
Returns { completed deleted, dead deleted, idempotency keys forgotten, 1 when the
queue holds no task and no idempotency key (else 0) }
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
local empty = (redis.call('HLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[7]) == 0) and 1 or 0
return { completed, dead, #expired, empty }
