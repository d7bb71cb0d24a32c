--[[ nack: ends deliveries of one queue as failed attempts (also used to release
the leases of a closed stream, with delay 0 and `release`, and to give back leases
that were never delivered or that the shard worker took back at shutdown, with
`release` 2).
KEYS[1] tasks   KEYS[2] state   KEYS[3] scheduled   KEYS[4] leased   KEYS[5] dead
KEYS[6] due (shard)   KEYS[7..16] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] random in [0,1) for jitter
ARGV[4] default backoff policy (JSON, for tasks stored without a record)
ARGV[5] n items, then 7 values per item:
  id, lease sequence (10 digits), nonce (14 digits), delay ms (-1 = the task's backoff; 0 = ready now),
  dead-letter (0/1), release (0: a nack; 1: a closed stream's lease, put back at the head
  of its list; 2: as 1, its attempt not counted unless the error text, not empty, is
  the task's last error already), error text (empty: the last error is kept)
A call of releases only puts them back at the head of their lists in the order of
its items (they are settled last first; a token given twice is settled by its last).
A nack is accepted while the task is LEASED under this fence (as ack). On the last
attempt, or with dead-letter, the task goes to the DLQ with the error as reason.
A release clears the delivery's nonce (NO_NONCE): its holder did not end it. So a
nack that finds the task READY, SCHEDULED or DEAD under this very delivery (same
lease sequence and nonce) is a repeat of the nack that ended it, sent again after a
lost answer; after a reap or a release, or once the task was delivered again, it is
stale.
Returns 2 values per item: code, state name (the new one; a repeat's or a stale's current)
   0 done   1 already nacked by this same delivery (a repeat)   -1 no such task
  -2 stale: no longer leased under this delivery
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
-- released leases go back to the head of their lists: a batch of releases is taken
-- last first, each put in front of the one after it, so it keeps its order there
-- (each item's list write comes with its state write: no id is left out of every list)
local releases = n > 0
for i = 0, n - 1 do
  if ARGV[6 + i * 7 + 5] == '0' then releases = false end
end
local first, last, step = 0, n - 1, 1
if releases then first, last, step = n - 1, 0, -1 end
local out = {}
for i = first, last, step do
  local a = 6 + i * 7
  local id = ARGV[a]
  local s = redis.call('HGET', KEYS[2], id)
  if not s then
    out[2 * i + 1] = -1
    out[2 * i + 2] = ''
  else
    local x = parseState(s)
    local release = ARGV[a + 5] ~= '0'
    if holds(s, ARGV[a + 1], ARGV[a + 2]) then
      -- spread the jitter of a batch: a different fraction per item
      local r = (rnd + i * 0.6180339887) % 1
      local reason = ARGV[a + 6]
      if release then x.nonce = NO_NONCE end
      -- uncounted, unless it repeats the last error: a task taken back by one shutdown
      -- after another, with no run in between that ended otherwise, counts every
      -- second time, so it still reaches its last attempt
      if ARGV[a + 5] == '2' and (reason == '' or x.err ~= reason) then x.att = math.max(x.att - 1, 0) end
      out[2 * i + 1] = 0
      out[2 * i + 2] = settleFailure(K, qid, id, x, now, reason, tonumber(ARGV[a + 3]), ARGV[a + 4] == '1', release, r)
    else
      local st = string.byte(s, 1)
      local ended = st == 82 or st == 83 or st == 68 -- R, S, D
      if not release and ended and x.nonce ~= NO_NONCE and sameDelivery(s, ARGV[a + 1], ARGV[a + 2]) then
        out[2 * i + 1] = 1
      else
        out[2 * i + 1] = -2
      end
      out[2 * i + 2] = STATE_NAMES[x.st]
    end
  end
end
return out
