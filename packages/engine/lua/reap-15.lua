--[[ reap: takes back expired leases of one queue, oldest deadline first, from the
in-flight index (never by sampling). Each is a failed attempt: rescheduled by the
task's backoff, or moved to the DLQ on its last attempt, with "lease expired".
KEYS[1] tasks   KEYS[2] scheduled   KEYS[3] leased   KEYS[4] dead   KEYS[5] due (shard)
KEYS[6..15] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] random in [0,1)   ARGV[4] limit
A lease expires when its deadline is strictly before now. An index entry whose
record is not a LEASED task past its deadline is dropped (or left, if the lease is
live) without touching the record. The queue's entry in the due index is
recomputed afterwards.
Returns: { reaped, dead of them }
]]
-- @include "settle-failure"
-- @include "refresh-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local rnd = tonumber(ARGV[3])
local K = { tasks = KEYS[1], scheduled = KEYS[2], leased = KEYS[3], dead = KEYS[4], due = KEYS[5], ready = {} }
for p = 0, 9 do K.ready[p + 1] = KEYS[6 + p] end
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
local reaped, dead = 0, 0
for i = 1, #ids do
  local id = ids[i]
  local raw = redis.call('HGET', KEYS[1], id)
  local task = raw and cjson.decode(raw)
  if task and task.state == 'LEASED' and tonumber(task.leaseDeadline) < now then
    local state = settleFailure(K, qid, task, now, 'lease expired', -1, false, false, (rnd + i * 0.6180339887) % 1)
    reaped = reaped + 1
    if state == 'DEAD' then dead = dead + 1 end
  elseif not task or task.state ~= 'LEASED' then
    redis.call('ZREM', KEYS[3], id)
  end
end
refreshDue(KEYS[5], qid, KEYS[2], KEYS[3])
return { reaped, dead }
