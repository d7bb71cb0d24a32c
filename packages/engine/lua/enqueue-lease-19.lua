--[[ enqueue-lease: stores a batch of new tasks in one queue, as enqueue does, then
leases up to N ready tasks of that queue, as lease does, in one call: the shard worker
hands a fresh batch straight to a stream waiting on the queue, without a second
round trip. The lease takes the queue's ready tasks in priority order, so older ready
tasks of a higher priority still come first.
When the queue has no ready list and no scheduled task due (a queue whose streams
keep up), the tasks the lease would take are the batch's own: they are written
LEASED straight away and only the rest are listed as ready, which saves the lists'
push, read and trim and the second state write (see enqueue-batch.lua's handoff).
KEYS[1..17]  as enqueue-17.lua: tasks, state, payloads, scheduled, idemidx, due, queues,
             ready:0 .. ready:9
KEYS[18] leased   KEYS[19] dead
KEYS[20..]   idempotency keys (their KEYS indexes, in the enqueue arguments, count from 1)
ARGV         enqueue-17.lua's arguments, then lease-17.lua's 10 (now, queue id, max tasks,
             lease duration, promotion limit, nonce, lease deadline, byte bound, first
             always, bytes per delivery)
Returns { left, k, then enqueue-17.lua's reply (k values), then lease-17.lua's reply
  without its first element (the ready-left count, which `left` stands for here) }
  left: the ids still in the queue's ready lists after the lease (an upper bound on the
  tasks still ready: an id whose task is gone is dropped only when a lease meets it)
]]
-- @include "enqueue-batch"
-- @include "lease-ready"
local leaseKeys = { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[18], KEYS[19], KEYS[6] }
for p = 8, 17 do leaseKeys[#leaseKeys + 1] = KEYS[p] end
local leaseArgs = {}
for i = #ARGV - 9, #ARGV do leaseArgs[#leaseArgs + 1] = ARGV[i] end
local nowText, qid, deadline = leaseArgs[1], leaseArgs[2], leaseArgs[7]
-- Nothing ready and nothing due: what the lease would take is the batch's own ready
-- tasks, so they are stored leased (handoff) rather than listed and read back.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', tonumber(nowText), 'LIMIT', 0, 1)
local handoff
if #due == 0 and redis.call('EXISTS', unpack(KEYS, 8, 17)) == 0 then
  handoff = { max = tonumber(leaseArgs[3]), leaseText = leaseArgs[4], nonce = leaseArgs[6], deadline = deadline,
    nowText = nowText, ids = {}, states = {}, records = {}, payloads = {},
    bound = deliveryBound(leaseArgs) }
end
local enqueued = enqueueBatch(KEYS, ARGV, handoff)
local leased, left
if handoff and handoff.taken then
  left = handoff.left
  leased = {}
  if #handoff.ids > 0 then
    indexLeases(KEYS[18], KEYS[6], qid, handoff.ids, deadline)
    leased = leaseReply(handoff.ids, handoff.states, handoff.records, handoff.payloads)
  end
else
  local drained
  leased, drained = leaseReady(leaseKeys, leaseArgs)
  left = 0
  -- a lease that read the ready lists to the end left them empty
  if not drained then
    for p = 8, 17 do left = left + redis.call('LLEN', KEYS[p]) end
  end
end
local out = { left, #enqueued }
for i = 1, #enqueued do out[#out + 1] = enqueued[i] end
for i = 1, #leased do out[#out + 1] = leased[i] end
return out
