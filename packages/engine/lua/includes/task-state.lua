-- The mutable part of a task lives in the queue's `state` hash as one compact
-- string, so the hot path never decodes or re-encodes JSON:
--   <S>,<priority>,<attempts>,<maxAttempts>,<leaseSeq>,<runAt>,<until>,<leaseMs>,<updatedAt>,<lastError>
-- S: R ready, S scheduled, L leased, C completed, D dead. `until` is the lease
-- deadline while L, the completion or death time while C or D, else 0. lastError
-- is the rest of the string (it may hold commas). The immutable part (backoff,
-- headers, idempotency key, created time) is the JSON record in the `tasks` hash.
local function parseState(s)
  local st, pri, att, max, seq, runAt, untilAt, lms, upd, err =
    string.match(s, '^(%u),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(.*)$')
  return {
    st = st, pri = tonumber(pri), att = tonumber(att), max = tonumber(max), seq = tonumber(seq),
    runAt = tonumber(runAt), untilAt = tonumber(untilAt), lms = tonumber(lms), upd = tonumber(upd), err = err,
  }
end

local function formatState(x)
  return x.st .. ',' .. x.pri .. ',' .. x.att .. ',' .. x.max .. ',' .. x.seq .. ',' .. x.runAt .. ','
    .. x.untilAt .. ',' .. x.lms .. ',' .. x.upd .. ',' .. x.err
end

local STATE_NAMES = { R = 'READY', S = 'SCHEDULED', L = 'LEASED', C = 'COMPLETED', D = 'DEAD' }
