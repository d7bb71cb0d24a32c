--[[ lease: delivers up to N ready tasks of one queue, highest priority first,
FIFO within a priority, after promoting the scheduled tasks that are due.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] scheduled   KEYS[5] leased
KEYS[6] dead    KEYS[7] due (shard)
KEYS[8..17] ready:0 .. ready:9
ARGV[1] now (ms, 13 digits)   ARGV[2] queue id   ARGV[3] max tasks
ARGV[4] lease duration (ms, 8 digits)   ARGV[5] promotion limit
ARGV[6] nonce of this call (14 random digits)   ARGV[7] lease deadline (ms, 13 digits)
ARGV[8] most bytes of deliveries ('' for no bound)   ARGV[9] 1: the first delivery is
kept whatever its size, 0: only what fits   ARGV[10] bytes a delivery takes besides its
payload, record and error text (its token, ids and framing, at most)
Each delivery counts one attempt, bumps the task's lease sequence and records this
call's nonce: the lease token carries both, so only this delivery's holder can
settle it (the nonce is fresh per call, so tokens cannot be guessed). A READY task whose attempts are already used up
(possible only after an import) goes to the DLQ instead of being delivered. Ids
whose state is not READY are dropped from the list, never delivered.
Every step works on the whole batch at once (one LRANGE/LTRIM per non-empty
priority, one HMGET, one HSET, one ZADD), so a batch costs few commands; but with a
byte bound each delivery's payload and record are read one by one, and the lease stops
before the first that would pass the bound (leaving it and the rest ready, in order):
the store never returns, nor the script holds, a batch's worth of large tasks to have
most of them given back.
Returns, compact for the client (one element per task, plus the sparse extras):
  { ready left: of the due tasks this call made ready, how many are still ready (the
      caller announces them: the due loop, finding them promoted, will not); when it
      stopped at its byte bound, every task still ready (a waiter woken for them
      took fewer than it was woken for),
    every delivered task's id (26) and fixed state part (81) concatenated,
    e, then (task number, last error text) for the e tasks that have an error,
    r, then (task number, record JSON) for the r tasks that have a record,
    then every delivered task's payload, in order }
  or only { ready left } when nothing was delivered.
]]
-- @include "lease-ready"
local out, drained, promoted, cut = leaseReady(KEYS, ARGV)
local left = 0
if cut or (promoted > 0 and not drained) then
  for p = 8, 17 do left = left + redis.call('LLEN', KEYS[p]) end
  if left > promoted and not cut then left = promoted end
end
table.insert(out, 1, left)
return out
