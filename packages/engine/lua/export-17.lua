--[[ export: reserves the next batch of one queue's tasks for the migration mover
and returns them. Reserved tasks leave their index (so they can be neither leased
nor promoted) for the `moving` set; their states are kept. While a batch is
reserved and not yet confirmed or restored, export returns that same batch again
(its first tasks, as many as the limits allow), so a mover that crashed resumes
exactly where it was.
Order: READY (priority 9 first, from the head), then SCHEDULED (earliest first),
then DEAD (oldest first). LEASED tasks are never exported: they move once settled.
A batch holds at most ARGV[2] tasks and at most ARGV[3] bytes of payloads, records
and states, its first task's included (a first task larger than that goes alone):
what the mover sends on in one request.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] dead
KEYS[6] moving   KEYS[7] idemidx   KEYS[8..17] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit (tasks)   ARGV[3] limit (bytes)
Returns 5 values per task: id, record JSON, state, payload, idempotency expiry (ms; 0 = none)
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxBytes = tonumber(ARGV[3])
local out = {}
local bytes = 0
-- appends one task's five values unless the byte limit is reached; false when it is
local function take(id)
  local state = redis.call('HGET', KEYS[2], id)
  if not state then return true, false end
  local record = redis.call('HGET', KEYS[1], id) or ''
  local payload = redis.call('HGET', KEYS[3], id) or ''
  local size = #state + #record + #payload
  if #out > 0 and bytes + size > maxBytes then return false, false end
  bytes = bytes + size
  local key = record ~= '' and cjson.decode(record).idemKey
  local expiry = 0
  if key then
    local score = redis.call('ZSCORE', KEYS[7], key)
    if score and tonumber(score) > now then expiry = tonumber(score) end
  end
  out[#out + 1] = id
  out[#out + 1] = record
  out[#out + 1] = state
  out[#out + 1] = payload
  out[#out + 1] = expiry
  return true, true
end
-- a reserved batch goes first; ids of tasks deleted meanwhile leave it (a batch
-- reserved with a larger limit may hold more than one read of `limit`)
while true do
  local reserved = redis.call('ZRANGE', KEYS[6], 0, limit - 1)
  if #reserved == 0 then break end
  for i = 1, #reserved do
    local more, taken = take(reserved[i])
    if not more then break end
    if not taken then redis.call('ZREM', KEYS[6], reserved[i]) end
  end
  if #out > 0 then return out end
end
local ids = {}
local full = false
-- READY lists from priority 9, then the earliest scheduled, then the oldest dead;
-- each source gives up only the ids taken from it
for p = 9, 0, -1 do
  local want = limit - #ids
  if want <= 0 or full then break end
  local got = redis.call('LRANGE', KEYS[8 + p], 0, want - 1)
  local n = 0
  for i = 1, #got do
    local more, taken = take(got[i])
    if not more then full = true break end
    n = i
    if taken then ids[#ids + 1] = got[i] end
  end
  if n > 0 then redis.call('LTRIM', KEYS[8 + p], n, -1) end
end
for _, index in ipairs({ KEYS[4], KEYS[5] }) do
  if #ids < limit and not full then
    local got = redis.call('ZRANGE', index, 0, limit - #ids - 1)
    local gone = {}
    for i = 1, #got do
      local more, taken = take(got[i])
      if not more then full = true break end
      gone[#gone + 1] = got[i]
      if taken then ids[#ids + 1] = got[i] end
    end
    if #gone > 0 then redis.call('ZREM', index, unpack(gone)) end
  end
end
-- scores keep the reservation order, so a resumed export returns the same order
for i = 1, #ids do redis.call('ZADD', KEYS[6], i, ids[i]) end
return out
