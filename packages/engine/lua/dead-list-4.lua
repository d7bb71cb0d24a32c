--[[ dead-list: a page of the DLQ of one queue, oldest first.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] dead
ARGV[1] cursor score (ms; "-inf" for the first page)   ARGV[2] cursor id ("" for the first page)
ARGV[3] page size
Entries with the cursor's score and an id not after the cursor's id were on earlier
pages and are skipped (ties are ordered by id).
Returns 5 values per task: id, record JSON, state, payload, death time (ms)
]]
local limit = tonumber(ARGV[3])
local afterId = ARGV[2]
local afterScore = ARGV[1]
local out = {}
local count = 0
local offset = 0
while count < limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[4], afterScore, '+inf', 'WITHSCORES', 'LIMIT', offset, limit)
  if #batch == 0 then break end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local skip = afterId ~= '' and tonumber(score) == tonumber(afterScore) and id <= afterId
    if not skip and count < limit then
      local state = redis.call('HGET', KEYS[2], id)
      if state then
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
        out[#out + 1] = state
        out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
        out[#out + 1] = score
        count = count + 1
      end
    end
  end
end
return out
