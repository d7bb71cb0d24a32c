-- leaseReady(KEYS, ARGV): the lease script's work (lease-17.lua documents the
-- layout); returns its reply, whether the queue's ready lists were read to the end
-- (fewer than the maximum ids were in them: they are empty now), how many due
-- scheduled tasks it made ready first, and whether it stopped at its byte bound.
-- @include "task-state"
-- @include "promote-due"
-- @include "lower-due"
-- @include "delivery-bytes"

-- leaseReply(ids, states, records, payloads): lease-17.lua's reply for the delivered
-- tasks (but its first element, the ready-left count lease-17.lua puts in front):
-- their ids, LEASED states, and (by task number, nil where none) records and payloads.
local function leaseReply(ids, states, records, payloads)
  local fixed, errors, extra = {}, {}, {}
  for i = 1, #ids do
    local s = states[i]
    fixed[i] = ids[i] .. string.sub(s, 1, 81)
    if #s > 81 then
      errors[#errors + 1] = i
      errors[#errors + 1] = string.sub(s, 82)
    end
    if records[i] then
      extra[#extra + 1] = i
      extra[#extra + 1] = records[i]
    end
  end
  local out = { table.concat(fixed), #errors / 2 }
  for i = 1, #errors do out[#out + 1] = errors[i] end
  out[#out + 1] = #extra / 2
  for i = 1, #extra do out[#out + 1] = extra[i] end
  for i = 1, #ids do out[#out + 1] = payloads[i] or '' end
  return out
end

-- indexLeases(leasedKey, dueKey, qid, ids, deadline): puts leases just made on the
-- reaper's index (the queue's `leased` set, by deadline) and brings the shard's due
-- index for the queue forward to just past that deadline (the reaper takes a lease
-- once its deadline is before now: due at the deadline itself, the due loop would
-- find nothing to do and ask again at once until the clock moved on).
local function indexLeases(leasedKey, dueKey, qid, ids, deadline)
  local inflight = {}
  for i = 1, #ids do
    inflight[#inflight + 1] = deadline
    inflight[#inflight + 1] = ids[i]
  end
  redis.call('ZADD', leasedKey, unpack(inflight))
  lowerDue(dueKey, qid, tonumber(deadline) + 1)
end

local function leaseReady(KEYS, ARGV)
  local now = tonumber(ARGV[1])
  local nowText = ARGV[1]
  local qid = ARGV[2]
  local max = tonumber(ARGV[3])
  local leaseText = ARGV[4]
  local nonce = ARGV[6]
  local deadline = ARGV[7]
  local bound = deliveryBound(ARGV)
  local ready = {}
  for p = 0, 9 do ready[p + 1] = KEYS[8 + p] end
  local promoted = promoteDue(KEYS[2], KEYS[4], ready, now, tonumber(ARGV[5]))

  -- the candidates, in priority order, and how many each list gave (p, n, p, n ...):
  -- the lists are trimmed by what was taken once the byte bound has had its say
  local ids, from = {}, {}
  for p = 10, 1, -1 do
    local want = max - #ids
    if want <= 0 then break end
    local got = redis.call('LRANGE', ready[p], 0, want - 1)
    if #got > 0 then
      from[#from + 1] = p
      from[#from + 1] = #got
      for i = 1, #got do ids[#ids + 1] = got[i] end
    end
  end
  if #ids == 0 then return {}, true, promoted, false end

  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  local writes, dead, delivered, deliveredStates = {}, {}, {}, {}
  local records, payloads = {}, {}
  local seen = {}
  -- with a byte bound each delivery's payload and record are read in turn, and the
  -- first that would pass the bound stops the lease there: what a lease reads from the
  -- store is what it may answer, one task more at most, whatever its tasks' sizes
  local taken, cut = #ids, false
  for i = 1, #ids do
    local id = ids[i]
    local s = states[i]
    -- only READY ids are delivered, each once (an id listed twice is never written so,
    -- but cheap to guard)
    if s and string.byte(s, 1) == 82 and not seen[id] then
      local att = string.sub(s, 3, 6)
      local encoded
      if att >= string.sub(s, 7, 10) then
        local x = parseState(s)
        x.st = 'D'
        x.untilAt = now
        x.upd = now
        if x.err == '' then x.err = 'attempts exhausted' end
        encoded = formatState(x)
        dead[#dead + 1] = now
        dead[#dead + 1] = id
      else
        if bound then
          local payload = redis.call('HGET', KEYS[3], id) or ''
          local record = redis.call('HGET', KEYS[1], id)
          if not takeWithin(bound, #payload + #s - 81 + recordBytes(record), #delivered) then
            taken = i - 1
            cut = true
            break
          end
          payloads[#delivered + 1] = payload
          records[#delivered + 1] = record
        end
        encoded = leasedState(s, nonce, deadline, leaseText, nowText)
        delivered[#delivered + 1] = id
        deliveredStates[#delivered] = encoded
      end
      seen[id] = true
      writes[#writes + 1] = id
      writes[#writes + 1] = encoded
    end
  end
  local rest = taken
  for j = 1, #from, 2 do
    if rest == 0 then break end
    local n = math.min(from[j + 1], rest)
    redis.call('LTRIM', ready[from[j]], n, -1)
    rest = rest - n
  end
  -- fewer ids than asked for, all taken: the lists were read to the end
  local drained = #ids < max and not cut
  if #writes > 0 then redis.call('HSET', KEYS[2], unpack(writes)) end
  if #dead > 0 then redis.call('ZADD', KEYS[6], unpack(dead)) end
  if #delivered == 0 then return {}, drained, promoted, cut end
  indexLeases(KEYS[5], KEYS[7], qid, delivered, deadline)
  if not bound then
    records = redis.call('HMGET', KEYS[1], unpack(delivered))
    payloads = redis.call('HMGET', KEYS[3], unpack(delivered))
  end
  return leaseReply(delivered, deliveredStates, records, payloads), drained, promoted, cut
end
