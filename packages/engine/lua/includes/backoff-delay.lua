-- backoffDelay(backoff, attempts, rnd): the delay in ms before retry number
-- `attempts`, from a backoff policy ({kind, baseMs, maxMs, jitter}), capped at its
-- maximum. `rnd` in [0,1) comes from the caller (scripts stay deterministic) and is
-- used only with jitter ("equal jitter": between half the delay and the delay).
local function backoffDelay(b, n, rnd)
  b = b or {}
  local base = tonumber(b.baseMs) or 1000
  local cap = tonumber(b.maxMs) or 300000
  if n < 1 then n = 1 end
  local delay
  if b.kind == 'fixed' then
    delay = base
  elseif b.kind == 'linear' then
    delay = base * n
  else
    -- exponential; 2^(n-1) is bounded so huge attempt counts cannot overflow
    local exp = n - 1
    if exp > 40 then exp = 40 end
    delay = base * (2 ^ exp)
  end
  if delay > cap then delay = cap end
  if b.jitter then
    delay = delay / 2 + rnd * delay / 2
  end
  return math.floor(delay)
end
