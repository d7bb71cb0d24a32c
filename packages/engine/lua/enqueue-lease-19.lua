--[[ enqueue-lease: stores a batch of new tasks in one queue, as enqueue does, then
leases up to N ready tasks of that queue, as lease does, in one call: the shard worker
hands a fresh batch straight to a stream waiting on the queue, without a second
round trip. The lease takes the queue's ready tasks in priority order, so older ready
tasks of a higher priority still come first.
KEYS[1..17]  as enqueue-17.lua: tasks, state, payloads, scheduled, idemidx, due, queues,
             ready:0 .. ready:9
KEYS[18] leased   KEYS[19] dead
KEYS[20..]   idempotency keys (their KEYS indexes, in the enqueue arguments, count from 1)
ARGV         enqueue-17.lua's arguments, then lease-17.lua's 7 (now, queue id, max tasks,
             lease duration, promotion limit, nonce, lease deadline)
Returns { left, k, then enqueue-17.lua's reply (k values), then lease-17.lua's reply }
  left: the ids still in the queue's ready lists after the lease (an upper bound on the
  tasks still ready: an id whose task is gone is dropped only when a lease meets it)
]]
-- @include "enqueue-batch"
-- @include "lease-ready"
local enqueued = enqueueBatch(KEYS, ARGV)
local leaseKeys = { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[18], KEYS[19], KEYS[6] }
for p = 8, 17 do leaseKeys[#leaseKeys + 1] = KEYS[p] end
local leaseArgs = {}
for i = #ARGV - 6, #ARGV do leaseArgs[#leaseArgs + 1] = ARGV[i] end
local leased = leaseReady(leaseKeys, leaseArgs)
local left = 0
for p = 8, 17 do left = left + redis.call('LLEN', KEYS[p]) end
local out = { left, #enqueued }
for i = 1, #enqueued do out[#out + 1] = enqueued[i] end
for i = 1, #leased do out[#out + 1] = leased[i] end
return out
