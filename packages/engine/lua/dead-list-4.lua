--[[ dead-list: a page of the DLQ of one queue, oldest first.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] dead
ARGV[1] cursor score (ms; "-inf" for the first page)   ARGV[2] cursor id ("" for the first page)
ARGV[3] page size   ARGV[4] most bytes of records, states and payloads in the page
ARGV[5] 1: the first task is listed whatever its size; 0: only what fits
Entries with the cursor's score and an id not after the cursor's id were on earlier
pages and are skipped (ties are ordered by id).
Returns { 1 when the page ended at the byte bound with more to list (else 0), then
5 values per task: id, record JSON, state, payload, death time (ms) }
]]
local limit = tonumber(ARGV[3])
local afterId = ARGV[2]
local afterScore = ARGV[1]
local maxBytes = tonumber(ARGV[4])
local firstAlways = ARGV[5] == '1'
local out = { 0 }
local count = 0
local bytes = 0
local offset = 0
while count < limit and out[1] == 0 do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[4], afterScore, '+inf', 'WITHSCORES', 'LIMIT', offset, limit)
  if #batch == 0 then break end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local skip = afterId ~= '' and tonumber(score) == tonumber(afterScore) and id <= afterId
    if not skip and count < limit and out[1] == 0 then
      local state = redis.call('HGET', KEYS[2], id)
      if state then
        local record = redis.call('HGET', KEYS[1], id) or ''
        local payload = redis.call('HGET', KEYS[3], id) or ''
        local size = #record + #state + #payload
        if bytes + size > maxBytes and not (count == 0 and firstAlways) then
          out[1] = 1
        else
          bytes = bytes + size
          out[#out + 1] = id
          out[#out + 1] = record
          out[#out + 1] = state
          out[#out + 1] = payload
          out[#out + 1] = score
          count = count + 1
        end
      end
    end
  end
end
return out
