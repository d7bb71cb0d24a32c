--[[ export: reserves the next batch of one queue's tasks for the migration mover
and returns them. Reserved tasks leave their index (so they can be neither leased
nor promoted) for the `moving` set; their states are kept. While a batch is
reserved and not yet confirmed or restored, export returns that same batch again
(as many of its tasks as the limits allow: its first ones, or its last with ARGV[4]
1), so a mover that crashed resumes exactly where it was.
Order: READY (priority 9 first), then SCHEDULED (earliest first), then DEAD (oldest
first). LEASED tasks are never exported: they move once settled. READY tasks of a
list are returned in the list's order, taken from its tail when the receiver puts
them at the head of its lists (a move's copying phase: the newest first, so the
batches rebuild each list in its order there, ahead of what producers enqueued on it
since the switch: FIFO within a priority holds through a move), and from its head
when the receiver appends them (a move's draining phase, an abort's trip home).
A batch holds at most ARGV[2] tasks and at most ARGV[3] bytes of payloads, records
and states, its first task's included (a first task larger than that goes alone):
what the mover sends on in one request.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] dead
KEYS[6] moving   KEYS[7] idemidx   KEYS[8..17] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit (tasks)   ARGV[3] limit (bytes)
ARGV[4] 1: READY from the tails (the receiver prepends), 0: from the heads (it appends)
Returns 5 values per task: id, record JSON, state, payload, idempotency expiry (ms; 0 = none)
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxBytes = tonumber(ARGV[3])
local fromTail = ARGV[4] == '1'
local out = {}
local bytes = 0
local taken = 0
-- one task's five values; false when it is gone, nil once the byte limit is reached
-- (the first task of a batch is taken whatever its size)
local function read(id)
  local state = redis.call('HGET', KEYS[2], id)
  if not state then return false end
  local record = redis.call('HGET', KEYS[1], id) or ''
  local payload = redis.call('HGET', KEYS[3], id) or ''
  local size = #state + #record + #payload
  if taken > 0 and bytes + size > maxBytes then return nil end
  bytes = bytes + size
  taken = taken + 1
  local key = record ~= '' and cjson.decode(record).idemKey
  local expiry = 0
  if key then
    local score = redis.call('ZSCORE', KEYS[7], key)
    if score and tonumber(score) > now then expiry = tonumber(score) end
  end
  return { id, record, state, payload, expiry }
end
local function put(entry)
  for j = 1, 5 do out[#out + 1] = entry[j] end
end
-- reads `ids` from their first one (from their last, with `fromEnd`) until the byte
-- limit: the entries read, in the order of `ids`; how many ids were looked at (gone
-- ones included); whether the limit stopped it. `gone` is called with each id whose
-- task no longer exists.
local function readRun(ids, fromEnd, gone)
  local from, to, step = 1, #ids, 1
  if fromEnd then from, to, step = #ids, 1, -1 end
  local entries = {}
  local looked = 0
  local full = false
  for i = from, to, step do
    local entry = read(ids[i])
    if entry == nil then
      full = true
      break
    end
    looked = looked + 1
    if entry then
      entries[#entries + 1] = entry
    elseif gone then
      gone(ids[i])
    end
  end
  if fromEnd then
    local n = #entries
    for i = 1, math.floor(n / 2) do entries[i], entries[n + 1 - i] = entries[n + 1 - i], entries[i] end
  end
  return entries, looked, full
end
-- a reserved batch goes first, from the end its lists are read from (one to be
-- prepended, resumed with fewer tasks, sends the reservation's newest first); ids of
-- tasks deleted meanwhile leave it (a batch reserved with a larger limit may hold
-- more than one read of `limit`)
local function unreserve(id) redis.call('ZREM', KEYS[6], id) end
while true do
  local reserved
  if fromTail then
    reserved = redis.call('ZRANGE', KEYS[6], -limit, -1)
  else
    reserved = redis.call('ZRANGE', KEYS[6], 0, limit - 1)
  end
  if #reserved == 0 then break end
  local entries = readRun(reserved, fromTail, unreserve)
  for i = 1, #entries do put(entries[i]) end
  if #out > 0 then return out end
end
local ids = {}
local full = false
local function reserve(entries)
  for i = 1, #entries do
    put(entries[i])
    ids[#ids + 1] = entries[i][1]
  end
end
-- READY lists from priority 9, each from the end ARGV[4] names
for p = 9, 0, -1 do
  local want = limit - #ids
  if want <= 0 or full then break end
  local list = KEYS[8 + p]
  local got
  if fromTail then
    got = redis.call('LRANGE', list, -want, -1)
  else
    got = redis.call('LRANGE', list, 0, want - 1)
  end
  local entries, looked
  entries, looked, full = readRun(got, fromTail)
  if looked > 0 and fromTail then
    redis.call('LTRIM', list, 0, -looked - 1)
  elseif looked > 0 then
    redis.call('LTRIM', list, looked, -1)
  end
  reserve(entries)
end
-- then the earliest scheduled, then the oldest dead; each source gives up only the
-- ids taken from it
for _, index in ipairs({ KEYS[4], KEYS[5] }) do
  if #ids < limit and not full then
    local got = redis.call('ZRANGE', index, 0, limit - #ids - 1)
    local entries, looked
    entries, looked, full = readRun(got, false)
    if looked > 0 then redis.call('ZREM', index, unpack(got, 1, looked)) end
    reserve(entries)
  end
end
-- scores keep the reservation order, so a resumed export returns the same order, and
-- say which end the lists gave it up from: positive from the tails, negative from the
-- heads (export-restore puts READY tasks back there)
local base = 0
if not fromTail then base = -#ids - 1 end
for i = 1, #ids do redis.call('ZADD', KEYS[6], base + i, ids[i]) end
return out
