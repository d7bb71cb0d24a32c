--[[ reap: takes back expired leases of one queue, oldest deadline first, from the
in-flight index (never by sampling). Each is a failed attempt: rescheduled by the
task's backoff, or moved to the DLQ on its last attempt, with "lease expired". The
delivery's nonce is cleared, so a nack sent after the reap is not taken for a repeat.
KEYS[1] tasks   KEYS[2] state   KEYS[3] scheduled   KEYS[4] leased   KEYS[5] dead
KEYS[6] due (shard)   KEYS[7..16] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] random in [0,1)   ARGV[4] limit
ARGV[5] default backoff policy (JSON, for tasks stored without a record)
A lease expires when its deadline is strictly before now. An index entry whose
task is not LEASED is dropped; one whose lease is still live is left. The queue's
entry in the due index is recomputed afterwards.
Returns: { reaped, dead of them, ready of them (a zero backoff) }
]]
-- @include "settle-failure"
-- @include "refresh-due"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local rnd = tonumber(ARGV[3])
local K = {
  tasks = KEYS[1], state = KEYS[2], scheduled = KEYS[3], leased = KEYS[4], dead = KEYS[5], due = KEYS[6],
  ready = {}, defaultBackoff = ARGV[5],
}
for p = 0, 9 do K.ready[p + 1] = KEYS[7 + p] end
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
local reaped, dead, ready = 0, 0, 0
if #ids > 0 then
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  for i = 1, #ids do
    local id = ids[i]
    local x = states[i] and parseState(states[i])
    if x and x.st == 'L' and x.untilAt < now then
      x.nonce = NO_NONCE
      local state = settleFailure(K, qid, id, x, now, 'lease expired', -1, false, false, (rnd + i * 0.6180339887) % 1)
      reaped = reaped + 1
      if state == 'DEAD' then dead = dead + 1 elseif state == 'READY' then ready = ready + 1 end
    elseif not x or x.st ~= 'L' then
      redis.call('ZREM', KEYS[4], id)
    end
  end
end
refreshDue(KEYS[6], qid, KEYS[3], KEYS[4])
return { reaped, dead, ready }
