--[[ export: reserves the next batch of one queue's tasks for the migration mover
and returns them. Reserved tasks leave their index (so they can be neither leased
nor promoted) for the `moving` set; their states are kept. While a batch is
reserved and not yet confirmed or restored, export returns that same batch again,
so a mover that crashed resumes exactly where it was.
Order: READY (priority 9 first, from the head), then SCHEDULED (earliest first),
then DEAD (oldest first). LEASED tasks are never exported: they move once settled.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] dead
KEYS[6] moving   KEYS[7] idemidx   KEYS[8..17] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit
Returns 5 values per task: id, record JSON, state, payload, idempotency expiry (ms; 0 = none)
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[6], 0, limit - 1)
if #ids == 0 then
  for p = 9, 0, -1 do
    local want = limit - #ids
    if want <= 0 then break end
    local got = redis.call('LRANGE', KEYS[8 + p], 0, want - 1)
    if #got > 0 then
      redis.call('LTRIM', KEYS[8 + p], #got, -1)
      for i = 1, #got do ids[#ids + 1] = got[i] end
    end
  end
  -- then the earliest scheduled, then the oldest dead
  for _, index in ipairs({ KEYS[4], KEYS[5] }) do
    if #ids < limit then
      local more = redis.call('ZRANGE', index, 0, limit - #ids - 1)
      if #more > 0 then redis.call('ZREM', index, unpack(more)) end
      for i = 1, #more do ids[#ids + 1] = more[i] end
    end
  end
  -- scores keep the reservation order, so a resumed export returns the same order
  for i = 1, #ids do redis.call('ZADD', KEYS[6], i, ids[i]) end
end
local out = {}
for i = 1, #ids do
  local id = ids[i]
  local state = redis.call('HGET', KEYS[2], id)
  if state then
    local record = redis.call('HGET', KEYS[1], id) or ''
    local key = record ~= '' and cjson.decode(record).idemKey
    local expiry = 0
    if key then
      local score = redis.call('ZSCORE', KEYS[7], key)
      if score and tonumber(score) > now then expiry = tonumber(score) end
    end
    out[#out + 1] = id
    out[#out + 1] = record
    out[#out + 1] = state
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
    out[#out + 1] = expiry
  else
    redis.call('ZREM', KEYS[6], id)
  end
end
return out
