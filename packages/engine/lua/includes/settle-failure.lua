-- settleFailure(K, qid, id, x, now, reason, delay, deadLetter, front, rnd): ends a
-- failed delivery of a LEASED task (nack, reap, release) and writes its state.
--   K: { tasks, state, scheduled, leased, dead, due, ready = {ready:0 .. ready:9},
--        defaultBackoff = JSON of the policy of tasks stored without a record }
--   x: the parsed state (task-state.lua)
--   delay: ms before the next attempt; < 0 means the task's backoff; 0 means ready now
--   deadLetter: true sends the task to the DLQ whatever attempts remain
--   front: true puts a READY task at the head of its list (a released lease)
-- The task goes to the DLQ when deadLetter is set or its attempts are used up. The
-- reaper and a release set x.nonce to NO_NONCE first; a nack keeps it (nack-16.lua).
-- Returns the new state's name.
-- @include "task-state"
-- @include "backoff-delay"
-- @include "lower-due"
local function settleFailure(K, qid, id, x, now, reason, delay, deadLetter, front, rnd)
  local dies = deadLetter or x.att >= x.max
  if not dies and delay < 0 then
    -- read before anything is written: a script that fails half-way is not rolled
    -- back, and the task must not be left out of every index
    -- a record holds a backoff only when it is not the default (task-record.ts)
    local raw = redis.call('HGET', K.tasks, id)
    local backoff = raw and cjson.decode(raw).backoff
    if not backoff then backoff = cjson.decode(K.defaultBackoff) end
    delay = backoffDelay(backoff, x.att, rnd)
  end
  redis.call('ZREM', K.leased, id)
  x.lms = 0
  x.untilAt = 0
  x.upd = now
  -- a task goes to the DLQ with its reason: a nack that gave none says so rather than
  -- leave an earlier attempt's error (or nothing) as the cause
  if dies and reason == '' then
    reason = deadLetter and 'dead-lettered by a nack that gave no error'
      or 'attempts exhausted (the last nack gave no error)'
  end
  if reason ~= '' then x.err = reason end
  if dies then
    x.st = 'D'
    x.untilAt = now
    redis.call('ZADD', K.dead, now, id)
  else
    if delay == 0 then
      x.st = 'R'
      x.runAt = now
      if front then
        redis.call('LPUSH', K.ready[x.pri + 1], id)
      else
        redis.call('RPUSH', K.ready[x.pri + 1], id)
      end
    else
      x.st = 'S'
      x.runAt = now + delay
      redis.call('ZADD', K.scheduled, x.runAt, id)
      lowerDue(K.due, qid, x.runAt)
    end
  end
  redis.call('HSET', K.state, id, formatState(x))
  return STATE_NAMES[x.st]
end
