--[[ import: stores tasks moved from another shard into one queue. Idempotent by
task id: a task this queue already holds is left as it is, unless this shard has it
reserved for a move the other way (in `moving`: an abort brings back a batch whose
import there had not yet been answered here). That copy is the one coming home: it
is stored over the reserved one and indexed, and taken out of `moving`, so the
confirmation of the earlier export, when its answer comes, deletes nothing (the
other side deletes its copy on this answer).
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] dead
KEYS[6] idemidx   KEYS[7] due (shard)   KEYS[8] queues (shard)   KEYS[9..18] ready:0 .. ready:9
KEYS[19] moving   KEYS[20] landed (the migration's ids stored or found here)
KEYS[21..] idempotency keys, referenced by index from the items
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] n items
ARGV[4] how long `landed` is kept, ms (0: nothing recorded)
ARGV[5] 1: READY tasks to the heads of their lists, 0: to the tails; then 7 values per item:
  id, record JSON ("" = none), state (R, S or D; attempts, run-at, priority and lease
  sequence as on the source), payload, idempotency KEYS index (0 = none), idempotency key text,
  idempotency expiry (ms)
The idempotency key is restored only while its window lasts and only if this shard
has not bound it to another task meanwhile.
Every id imported or already present goes into `landed`: an abort asks which ids of
the batch it had reserved are here (HeldTasks), and one that was finished and deleted
here since must still count, or the source would put it back and it would run again.
For the same reason an id in `landed` counts as already present though it is gone.
READY tasks keep the batch's order in their lists. A move's copying phase puts them
at the head, ahead of the tasks enqueued here since the switch: export takes a list's
batches from its tail (the newest first), so the moved tasks keep their order here
(FIFO within a priority). A move's draining phase and an abort's trip home append
them, as tasks arriving: export takes them from the head there.
Returns one code per item: 0 imported, 1 already present, -4 refused (state, or a
priority that is not one digit)
]]
-- @include "task-state"
-- @include "lower-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local n = tonumber(ARGV[3])
local keep = tonumber(ARGV[4])
local atHead = ARGV[5] == '1'

-- Whether `id` is here already, or landed here earlier and is gone since (finished and
-- deleted by retention, or purged): a batch sent again after its answer was lost, once
-- that happened, must not run those tasks a second time. A copy reserved here for a
-- move the other way (in `moving`) is not: it is coming home.
local function landedBefore(id)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then return redis.call('ZREM', KEYS[19], id) == 0 end
  return keep > 0 and redis.call('SISMEMBER', KEYS[20], id) == 1
end
local out = {}
local imported = 0
local ready = {}
for i = 0, n - 1 do
  local a = 6 + i * 7
  local id = ARGV[a]
  local x = parseState(ARGV[a + 2])
  -- (a priority that is not one digit would stop the script after earlier items were
  -- written, and before their READY ones are pushed)
  if (x.st ~= 'R' and x.st ~= 'S' and x.st ~= 'D') or not x.pri then
    out[#out + 1] = -4
  elseif landedBefore(id) then
    out[#out + 1] = 1
    if keep > 0 then redis.call('SADD', KEYS[20], id) end
  else
    if keep > 0 then redis.call('SADD', KEYS[20], id) end
    if ARGV[a + 1] ~= '' then
      redis.call('HSET', KEYS[1], id, ARGV[a + 1])
    else
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('HSET', KEYS[2], id, ARGV[a + 2])
    redis.call('HSET', KEYS[3], id, ARGV[a + 3])
    if x.st == 'R' then
      local list = ready[x.pri]
      if not list then
        list = {}
        ready[x.pri] = list
      end
      list[#list + 1] = id
    elseif x.st == 'S' then
      redis.call('ZADD', KEYS[4], x.runAt, id)
      lowerDue(KEYS[7], qid, x.runAt)
    else
      redis.call('ZADD', KEYS[5], x.untilAt, id)
    end
    local idemIndex = tonumber(ARGV[a + 4])
    local expiry = tonumber(ARGV[a + 6])
    if idemIndex > 0 and expiry > now then
      local bound = redis.call('SET', KEYS[idemIndex], id, 'PX', expiry - now, 'NX')
      if bound then redis.call('ZADD', KEYS[6], expiry, ARGV[a + 5]) end
    end
    out[#out + 1] = 0
    imported = imported + 1
  end
end
-- READY tasks in the batch's order, at the head (LPUSH puts its last argument first)
-- or the tail of their lists
for p, ids in pairs(ready) do
  if atHead then
    local args = {}
    for i = #ids, 1, -1 do args[#args + 1] = ids[i] end
    redis.call('LPUSH', KEYS[9 + p], unpack(args))
  else
    redis.call('RPUSH', KEYS[9 + p], unpack(ids))
  end
end
if imported > 0 then redis.call('SADD', KEYS[8], qid) end
if keep > 0 and n > 0 then redis.call('PEXPIRE', KEYS[20], keep) end
return out
