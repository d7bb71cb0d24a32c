-- deadBatch(stateKey, deadKey, firstId, limit, apply, repeated): the shared walk of
-- redrive and purge. Takes the ids in ARGV[firstId..] (always named: the caller reads
-- "the oldest" first, so a call re-sent after a lost reply never takes more), calls
-- apply(id, x) with the parsed state of each DEAD one up to `limit` (after removing
-- it from the DLQ index), and returns
-- { applied, dead remaining, ids that were not dead tasks ... }. A named id must be
-- in the DLQ index too: a dead task a move has reserved (export) is DEAD but out of
-- it, and redriving or purging it here would be undone when the move confirms.
-- `repeated(x)`, when given, tells a task this very call already applied to (its
-- first run, whose reply a reconnect lost): counted as applied, not as missing.
-- @include "task-state"
local function deadBatch(stateKey, deadKey, firstId, limit, apply, repeated)
  local ids = {}
  for i = firstId, #ARGV do ids[#ids + 1] = ARGV[i] end
  local applied = 0
  local missing = {}
  for i = 1, #ids do
    local id = ids[i]
    local s = redis.call('HGET', stateKey, id)
    local x = s and parseState(s)
    if x and x.st == 'D' and redis.call('ZSCORE', deadKey, id) then
      if applied < limit then
        redis.call('ZREM', deadKey, id)
        apply(id, x)
        applied = applied + 1
      end
    elseif x and repeated and repeated(x) and applied < limit then
      applied = applied + 1
    else
      missing[#missing + 1] = id
    end
  end
  local out = { applied, redis.call('ZCARD', deadKey) }
  for i = 1, #missing do out[#out + 1] = missing[i] end
  return out
end
