-- settleFailure(K, qid, task, now, reason, delay, deadLetter, front, rnd): ends a
-- failed delivery of a LEASED task (nack, reap, release) and writes the record.
--   K: { tasks, scheduled, leased, dead, due, ready = {ready:0 .. ready:9} }
--   delay: ms before the next attempt; < 0 means the task's backoff; 0 means ready now
--   deadLetter: true sends the task to the DLQ whatever attempts remain
--   front: true puts a READY task at the head of its list (a released lease)
-- The task goes to the DLQ when deadLetter is set or its attempts are used up.
-- Returns the new state.
-- @include "backoff-delay"
-- @include "lower-due"
local function settleFailure(K, qid, task, now, reason, delay, deadLetter, front, rnd)
  local id = task.id
  redis.call('ZREM', K.leased, id)
  task.leaseDeadline = nil
  task.leaseMs = nil
  task.updatedAt = now
  if reason ~= '' then task.lastError = reason end
  if deadLetter or (tonumber(task.attempts) or 0) >= (tonumber(task.maxAttempts) or 1) then
    task.state = 'DEAD'
    task.doneAt = now
    redis.call('ZADD', K.dead, now, id)
  else
    if delay < 0 then delay = backoffDelay(task, rnd) end
    if delay == 0 then
      task.state = 'READY'
      task.runAt = now
      local list = K.ready[(tonumber(task.priority) or 0) + 1]
      if front then
        redis.call('LPUSH', list, id)
      else
        redis.call('RPUSH', list, id)
      end
    else
      task.state = 'SCHEDULED'
      task.runAt = now + delay
      redis.call('ZADD', K.scheduled, task.runAt, id)
      lowerDue(K.due, qid, task.runAt)
    end
  end
  redis.call('HSET', K.tasks, id, cjson.encode(task))
  return task.state
end
