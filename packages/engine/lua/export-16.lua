--[[ export: reserves the next batch of one queue's tasks for the migration mover
and returns them. Reserved tasks leave their index (so they can be neither leased
nor promoted) for the `moving` set; their records keep their state. While a batch
is reserved and not yet confirmed or restored, export returns that same batch
again, so a mover that crashed resumes exactly where it was.
Order: READY (priority 9 first, from the head), then SCHEDULED (earliest first),
then DEAD (oldest first). LEASED tasks are never exported: they move once settled.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] scheduled   KEYS[4] dead   KEYS[5] moving
KEYS[6] idemidx   KEYS[7..16] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] limit
Returns 4 values per task: id, record JSON, payload, idempotency expiry (ms; 0 = none)
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[5], 0, limit - 1)
if #ids == 0 then
  for p = 9, 0, -1 do
    while #ids < limit do
      local id = redis.call('LPOP', KEYS[7 + p])
      if not id then break end
      ids[#ids + 1] = id
    end
  end
  -- then the earliest scheduled, then the oldest dead
  for _, index in ipairs({ KEYS[3], KEYS[4] }) do
    if #ids < limit then
      local more = redis.call('ZRANGE', index, 0, limit - #ids - 1)
      for i = 1, #more do
        redis.call('ZREM', index, more[i])
        ids[#ids + 1] = more[i]
      end
    end
  end
  -- scores keep the reservation order, so a resumed export returns the same order
  for i = 1, #ids do redis.call('ZADD', KEYS[5], i, ids[i]) end
end
local out = {}
for i = 1, #ids do
  local id = ids[i]
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local task = cjson.decode(raw)
    local expiry = 0
    if task.idemKey then
      local score = redis.call('ZSCORE', KEYS[6], task.idemKey)
      if score and tonumber(score) > now then expiry = tonumber(score) end
    end
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
    out[#out + 1] = expiry
  else
    redis.call('ZREM', KEYS[5], id)
  end
end
return out
