-- enqueueBatch(KEYS, ARGV, handoff): the enqueue script's work (enqueue-17.lua
-- documents the layout); returns its reply. ARGV may carry more values after the
-- enqueue's own (enqueue-lease-19.lua appends the lease's), which it does not read.
-- With `handoff` (enqueue-lease-19.lua, only when the queue has nothing ready and
-- nothing due), up to handoff.max of the new READY tasks, highest priority first and
-- FIFO within a priority (the order a lease takes them in), and within
-- handoff.bound when set (as lease-ready.lua bounds a lease), are stored LEASED under
-- handoff's nonce, deadline, lease duration and time instead of being listed as
-- ready; their ids, states, records and payloads are appended to handoff.ids,
-- .states, .records and .payloads, handoff.left is set to the ready tasks left, and
-- handoff.taken to true. A batch the lease would treat otherwise (a new task with no
-- attempt left, which it dead-letters, or one scheduled at or before now, which it
-- promotes) is stored as without `handoff`, and handoff.taken stays false.
-- @include "task-state"
-- @include "lower-due"
-- @include "delivery-bytes"
local function enqueueBatch(KEYS, ARGV, handoff)
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
  -- with a handoff: each new task's item number and where its state is in `states`
  local itemAt, stateAt = {}, {}
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
      if handoff then
        itemAt[id] = i
        stateAt[id] = #states
      end
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
      if handoff and (string.sub(state, 3, 6) >= string.sub(state, 7, 10)
          or (string.byte(state, 1) == 83 and tonumber(string.sub(state, 35, 47)) <= now)) then
        handoff = nil -- the general path's lease decides (see above)
      end
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
  if handoff then
    local left = 0
    for p = 10, 1, -1 do
      local list = byPriority[p]
      if list then
        local keep = {}
        for _, id in ipairs(list) do
          local at, item = stateAt[id], itemAt[id]
          -- past the byte bound nothing more is handed off: the rest is listed, in order
          if handoff.bound and #handoff.ids < handoff.max
              and not takeWithin(handoff.bound, #ARGV[5 + item] + recordBytes(recordOf[item]), #handoff.ids) then
            handoff.max = #handoff.ids
          end
          if #handoff.ids < handoff.max then
            local leasedAs = leasedState(states[at], handoff.nonce, handoff.deadline, handoff.leaseText, handoff.nowText)
            states[at] = leasedAs
            local k = #handoff.ids + 1
            handoff.ids[k] = id
            handoff.states[k] = leasedAs
            handoff.records[k] = recordOf[item]
            handoff.payloads[k] = ARGV[5 + item]
          else
            keep[#keep + 1] = id
          end
        end
        left = left + #keep
        byPriority[p] = #keep > 0 and keep or nil
      end
    end
    handoff.left = left
    handoff.taken = true
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
end
