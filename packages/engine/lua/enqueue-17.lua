--[[ enqueue: stores a batch of new tasks in one queue.
KEYS[1]  tasks      KEYS[2] state       KEYS[3] payloads   KEYS[4] scheduled
KEYS[5]  idemidx    KEYS[6] due (shard) KEYS[7] queues (shard)
KEYS[8..17]  ready:0 .. ready:9
KEYS[18..]   idempotency keys
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] idempotency window (ms)   ARGV[4] n items
ARGV[5] every item's id (26 characters) and state (81 characters, R or S; task-state.lua),
        concatenated (107 characters per item, in item order)
ARGV[6 .. 5+n] every item's payload
then r, the number of items with a record, and 2 values for each: item number (1-based),
  record JSON
then m, the number of items with an idempotency key, and 3 values for each:
  item number (1-based), KEYS index of its key, the key's text
(Packing the fixed-width parts into one argument keeps the argument count, which
costs the client per argument, at about one per task.)
Returns { codes, then (item number, original id, original state letter) per duplicate }
  codes: one character per item:
    0  stored (the caller knows its id and state)
    1  duplicate: the idempotency key is live; the original's id and state letter follow
       (the letter is "" when the original is gone after retention)
    5  refused: a task with this id exists (nothing written for the item)
]]
-- @include "enqueue-batch"
return enqueueBatch(KEYS, ARGV)
