-- The mutable part of a task lives in the queue's `state` hash as one fixed-width
-- string, so the hot path reads and writes fields with string.sub at fixed offsets
-- and never decodes JSON or formats numbers (both cost more than the commands):
--   pos  1     state: R ready, S scheduled, L leased, C completed, D dead
--   pos  2     priority, 1 digit
--   pos  3-6   attempts, 4 digits          pos  7-10  max attempts, 4 digits
--   pos 11-20  lease sequence, 10 digits   pos 21-34  nonce of the last delivery, 14 digits (NO_NONCE below)
--   pos 35-47  run-at ms, 13 digits        pos 48-60  until ms, 13 digits
--   pos 61-68  lease duration ms, 8 digits pos 69-81  updated ms, 13 digits
--   pos 82-    last error (free text)
-- `until` is the lease deadline while L, the completion or death time while C or D,
-- else 0. Fixed-width digits also compare correctly as strings. The lease sequence
-- counts every delivery ever; with the nonce it fences stale and forged tokens.
-- The immutable part (backoff, headers, idempotency key), when a task has any, is
-- the JSON record in the `tasks` hash.
local function parseState(s)
  return {
    st = string.sub(s, 1, 1), pri = tonumber(string.sub(s, 2, 2)), att = tonumber(string.sub(s, 3, 6)),
    max = tonumber(string.sub(s, 7, 10)), seq = tonumber(string.sub(s, 11, 20)), nonce = string.sub(s, 21, 34),
    runAt = tonumber(string.sub(s, 35, 47)), untilAt = tonumber(string.sub(s, 48, 60)),
    lms = tonumber(string.sub(s, 61, 68)), upd = tonumber(string.sub(s, 69, 81)), err = string.sub(s, 82),
  }
end

local function formatState(x)
  return string.format('%s%d%04d%04d%010d%s%013d%013d%08d%013d', x.st, x.pri, x.att, x.max, x.seq, x.nonce,
    x.runAt, x.untilAt, x.lms, x.upd) .. x.err
end

-- leasedState(s, nonce, deadline, leaseText, nowText): READY state `s` delivered now:
-- LEASED, one more attempt and lease sequence, this delivery's nonce, its deadline
-- (13 digits), lease duration (8 digits) and time (13 digits); the rest kept. A
-- task's first delivery (no attempt, no lease yet) needs no number formatted; else
-- one format call for both counters (each number Lua formats costs).
local function leasedState(s, nonce, deadline, leaseText, nowText)
  local counters
  if string.sub(s, 3, 6) == '0000' and string.sub(s, 11, 20) == '0000000000' then
    counters = '0001' .. string.sub(s, 7, 10) .. '0000000001'
  else
    counters = string.format('%04d%s%010d', tonumber(string.sub(s, 3, 6)) + 1, string.sub(s, 7, 10),
      tonumber(string.sub(s, 11, 20)) + 1)
  end
  return 'L' .. string.sub(s, 2, 2) .. counters .. nonce .. string.sub(s, 35, 47) .. deadline .. leaseText .. nowText
    .. string.sub(s, 82)
end

-- sameDelivery(s, seq, nonce): true when the state string records exactly this
-- delivery (seq: 10 digits, nonce: 14 digits, as the token carries them padded),
-- whatever the task's state now.
local function sameDelivery(s, seq, nonce)
  return string.sub(s, 11, 20) == seq and string.sub(s, 21, 34) == nonce
end

-- holds(s, seq, nonce): true when the state string is LEASED under exactly this delivery.
local function holds(s, seq, nonce)
  return string.byte(s, 1) == 76 and sameDelivery(s, seq, nonce)
end

-- The nonce of a delivery the holder did not end itself (the reaper took it back, or
-- its stream closed): lease calls never draw 0, so a nack sent again still matches
-- only a delivery its holder nacked.
local NO_NONCE = '00000000000000'

local STATE_NAMES = { R = 'READY', S = 'SCHEDULED', L = 'LEASED', C = 'COMPLETED', D = 'DEAD' }
