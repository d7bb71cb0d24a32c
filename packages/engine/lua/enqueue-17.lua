--[[ enqueue: stores a batch of new tasks in one queue.
KEYS[1]  tasks      KEYS[2] state       KEYS[3] payloads   KEYS[4] scheduled
KEYS[5]  idemidx    KEYS[6] due (shard) KEYS[7] queues (shard)
KEYS[8..17]  ready:0 .. ready:9
KEYS[18..]   idempotency keys
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] idempotency window (ms)   ARGV[4] n items
ARGV[5] every item's id (26 characters) and state (81 characters, R or S; task-state.lua),
        concatenated (107 characters per item, in item order)
ARGV[6 .. 5+n] every item's payload
then r, the number of items with a record, and 2 values for each: item number (1-based),
  record JSON
then m, the number of items with an idempotency key, and 3 values for each:
  item number (1-based), KEYS index of its key, the key's text
(Packing the fixed-width parts into one argument keeps the argument count, which
costs the client per argument, at about one per task.)
Returns { codes, then (item number, original id, original state letter) per duplicate }
  codes: one character per item:
    0  stored (the caller knows its id and state)
    1  duplicate: the idempotency key is live; the original's id and state letter follow
       (the letter is "" when the original is gone after retention)
    5  refused: a task with this id exists (nothing written for the item)
]]
-- @include "task-state"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local window = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local packed = ARGV[5]
local recordOf = {}
local r = tonumber(ARGV[6 + n])
for j = 0, r - 1 do
  local b = 7 + n + j * 2
  recordOf[tonumber(ARGV[b])] = ARGV[b + 1]
end
local idem = {}
local m = tonumber(ARGV[7 + n + r * 2])
for j = 0, m - 1 do
  local b = 8 + n + r * 2 + j * 3
  idem[tonumber(ARGV[b])] = { KEYS[tonumber(ARGV[b + 1])], ARGV[b + 2] }
end
local ids = {}
for i = 0, n - 1 do ids[i + 1] = string.sub(packed, i * 107 + 1, i * 107 + 26) end
local existing = redis.call('HMGET', KEYS[2], unpack(ids))
local codes, dups = {}, {}
local records, states, payloads, scheduled = {}, {}, {}, {}
local byPriority = {}
local seen, pending = {}, {}
for i = 1, n do
  local id = ids[i]
  local state = string.sub(packed, (i - 1) * 107 + 27, i * 107)
  local key = idem[i]
  local original = key and redis.call('GET', key[1])
  if original then
    -- the original may be an earlier item of this very batch, not yet written
    local s = pending[original] or redis.call('HGET', KEYS[2], original)
    codes[i] = '1'
    dups[#dups + 1] = i
    dups[#dups + 1] = original
    dups[#dups + 1] = s and string.sub(s, 1, 1) or ''
  elseif existing[i] or seen[id] then
    codes[i] = '5'
  else
    seen[id] = true
    pending[id] = state
    states[#states + 1] = id
    states[#states + 1] = state
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = ARGV[5 + i]
    if recordOf[i] then
      records[#records + 1] = id
      records[#records + 1] = recordOf[i]
    end
    if key then
      redis.call('SET', key[1], id, 'PX', window)
      redis.call('ZADD', KEYS[5], now + window, key[2])
    end
    codes[i] = '0'
    if string.byte(state, 1) == 83 then -- 'S'
      local runAt = string.sub(state, 35, 47)
      scheduled[#scheduled + 1] = runAt
      scheduled[#scheduled + 1] = id
      lowerDue(KEYS[6], qid, tonumber(runAt))
    else
      local p = string.byte(state, 2) - 47 -- the priority digit → list 1..10
      local list = byPriority[p]
      if not list then
        list = {}
        byPriority[p] = list
      end
      list[#list + 1] = id
    end
  end
end
if #states > 0 then
  redis.call('HSET', KEYS[2], unpack(states))
  redis.call('HSET', KEYS[3], unpack(payloads))
  if #records > 0 then redis.call('HSET', KEYS[1], unpack(records)) end
  if #scheduled > 0 then redis.call('ZADD', KEYS[4], unpack(scheduled)) end
  for p, list in pairs(byPriority) do redis.call('RPUSH', KEYS[7 + p], unpack(list)) end
  redis.call('SADD', KEYS[7], qid)
end
local out = { table.concat(codes) }
for i = 1, #dups do out[#out + 1] = dups[i] end
return out
