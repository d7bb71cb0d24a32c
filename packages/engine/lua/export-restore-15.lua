--[[ export-restore: puts every reserved task of one queue back where its state
says (an aborted move): READY at the end of its list it was taken from, in the
original order (the tail for a batch reserved from the tails, whose `moving` scores
are positive; the head for one from the heads, negative: see export),
SCHEDULED and DEAD into their sets; a SCHEDULED one also lowers the shard's due
index to its run-at (a due pass while it was reserved may have dropped the queue
from it, and nothing else would bring it back).
KEYS[1] state   KEYS[2] scheduled   KEYS[3] dead   KEYS[4] moving   KEYS[5] due (shard)
KEYS[6..15] ready:0 .. ready:9
ARGV[1] queue id (its member in the due index)
Returns the number restored
]]
-- @include "task-state"
-- @include "lower-due"
-- id, score, id, score …: one batch, whose scores all have the same sign
local reserved = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
local atHead = #reserved > 0 and tonumber(reserved[2]) < 0
local restored = 0
-- reservation order is each list's order: walked forwards for RPUSH, backwards for
-- LPUSH, each list is rebuilt in it
local from, to, step = 1, #reserved - 1, 2
if atHead then from, to, step = #reserved - 1, 1, -2 end
for i = from, to, step do
  local id = reserved[i]
  redis.call('ZREM', KEYS[4], id)
  local s = redis.call('HGET', KEYS[1], id)
  if s then
    local x = parseState(s)
    if x.st == 'R' and atHead then
      redis.call('LPUSH', KEYS[6 + x.pri], id)
    elseif x.st == 'R' then
      redis.call('RPUSH', KEYS[6 + x.pri], id)
    elseif x.st == 'S' then
      redis.call('ZADD', KEYS[2], x.runAt, id)
      lowerDue(KEYS[5], ARGV[1], x.runAt)
    elseif x.st == 'D' then
      redis.call('ZADD', KEYS[3], x.untilAt, id)
    end
    restored = restored + 1
  end
end
return restored
