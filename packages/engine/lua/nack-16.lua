--[[ nack: ends deliveries of one queue as failed attempts (also used to release
the leases of a closed stream, with delay 0 and `front`).
KEYS[1] tasks   KEYS[2] state   KEYS[3] scheduled   KEYS[4] leased   KEYS[5] dead
KEYS[6] due (shard)   KEYS[7..16] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] random in [0,1) for jitter
ARGV[4] default backoff policy (JSON, for tasks stored without a record)
ARGV[5] n items, then 7 values per item:
  id, lease sequence (10 digits), nonce (14 digits), delay ms (-1 = the task's backoff; 0 = ready now),
  dead-letter (0/1), front (0/1: put back at the head of its list), error text
A nack is accepted while the task is LEASED under this fence (as ack). On the last
attempt, or with dead-letter, the task goes to the DLQ with the error as reason.
Returns 2 values per item: code, new state name
   0 done   -1 no such task   -2 stale: no longer leased under this delivery
]]
-- @include "settle-failure"
local now = tonumber(ARGV[1])
local qid = ARGV[2]
local rnd = tonumber(ARGV[3])
local n = tonumber(ARGV[5])
local K = {
  tasks = KEYS[1], state = KEYS[2], scheduled = KEYS[3], leased = KEYS[4], dead = KEYS[5], due = KEYS[6],
  ready = {}, defaultBackoff = ARGV[4],
}
for p = 0, 9 do K.ready[p + 1] = KEYS[7 + p] end
local out = {}
for i = 0, n - 1 do
  local a = 6 + i * 7
  local id = ARGV[a]
  local s = redis.call('HGET', KEYS[2], id)
  if not s then
    out[#out + 1] = -1
    out[#out + 1] = ''
  else
    local x = parseState(s)
    if holds(s, ARGV[a + 1], ARGV[a + 2]) then
      -- spread the jitter of a batch: a different fraction per item
      local r = (rnd + i * 0.6180339887) % 1
      out[#out + 1] = 0
      out[#out + 1] = settleFailure(K, qid, id, x, now, ARGV[a + 6], tonumber(ARGV[a + 3]), ARGV[a + 4] == '1', ARGV[a + 5] == '1', r)
    else
      out[#out + 1] = -2
      out[#out + 1] = STATE_NAMES[x.st]
    end
  end
end
return out
