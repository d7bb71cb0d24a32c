--[[ unlease: undoes a lease call whose reply never reached the worker. When the
connection to the store drops after a lease script ran but before its reply arrived,
ioredis sends the call again on the new connection: the second run leases other
tasks, and the first run's tasks are held by nobody (no token for them was ever
issued). They are found by what that call wrote into each of them (its nonce and its
lease deadline, the same in both runs) and given back as if never leased.
KEYS[1] state   KEYS[2] leased   KEYS[3..12] ready:0 .. ready:9
ARGV[1] now (ms, 13 digits)   ARGV[2] the call's lease deadline (ms, 13 digits)
ARGV[3] the call's nonce (14 digits)   ARGV[4] n, then n ids to keep (the ones the
reply that did arrive delivered); then m, and m ids: the reply's, in its order (0
when the reply was lost)
A task still LEASED under that nonce and deadline, and not kept, goes back to READY
at the head of its list (those of one list in the reply's order, which was the
list's; ids the reply did not name, a lost reply's, in id order after them), its
attempt not counted; its lease
sequence stays (sequences are never reused), its nonce is cleared. Every call with
the same deadline shares its index entries, so they are read and written in chunks.
Returns the number of tasks given back.
]]
-- @include "task-state"
local CHUNK = 1000
local nowText, deadline, nonce = ARGV[1], ARGV[2], ARGV[3]
local keep = {}
local kept = tonumber(ARGV[4])
for i = 1, kept do keep[ARGV[4 + i]] = true end
local rank = {}
local ranked = tonumber(ARGV[5 + kept] or '0')
for i = 1, ranked do rank[ARGV[5 + kept + i]] = i end
local back, writes, lists = {}, {}, {}
local offset = 0
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], deadline, deadline, 'LIMIT', offset, CHUNK)
  if #ids == 0 then break end
  local states = redis.call('HMGET', KEYS[1], unpack(ids))
  for i = 1, #ids do
    local id, s = ids[i], states[i]
    if s and not keep[id] and string.byte(s, 1) == 76 and string.sub(s, 21, 34) == nonce
      and string.sub(s, 48, 60) == deadline then
      local attempts = math.max(tonumber(string.sub(s, 3, 6)) - 1, 0)
      back[#back + 1] = id
      writes[#writes + 1] = id
      writes[#writes + 1] = 'R' .. string.sub(s, 2, 2) .. string.format('%04d', attempts) .. string.sub(s, 7, 20)
        .. NO_NONCE .. string.sub(s, 35, 47) .. '0000000000000' .. '00000000' .. nowText .. string.sub(s, 82)
      local p = tonumber(string.sub(s, 2, 2)) + 1
      lists[p] = lists[p] or {}
      table.insert(lists[p], id)
    end
  end
  if #ids < CHUNK then break end
  offset = offset + CHUNK
end
-- written in chunks: one command's arguments stay well under Lua's unpack limit
for from = 1, #back, CHUNK do
  local ids, fields = {}, {}
  for i = from, math.min(from + CHUNK - 1, #back) do
    ids[#ids + 1] = back[i]
    fields[#fields + 1] = writes[2 * i - 1]
    fields[#fields + 1] = writes[2 * i]
  end
  redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('HSET', KEYS[1], unpack(fields))
end
for p, listed in pairs(lists) do
  if ranked > 0 then
    local last = ranked + 1
    table.sort(listed, function(a, b)
      local ra, rb = rank[a] or last, rank[b] or last
      if ra ~= rb then return ra < rb end
      return a < b
    end)
  end
  -- LPUSH puts each id before the one pushed before it: push the last one first
  for to = #listed, 1, -CHUNK do
    local reversed = {}
    for i = to, math.max(to - CHUNK + 1, 1), -1 do reversed[#reversed + 1] = listed[i] end
    redis.call('LPUSH', KEYS[2 + p], unpack(reversed))
  end
end
return #back
