--[[ promote: makes due SCHEDULED tasks of one queue READY, in run-at order, and
recomputes the queue's entry in the due index.
KEYS[1] state   KEYS[2] scheduled   KEYS[3] leased   KEYS[4] due (shard)
KEYS[5..14] ready:0 .. ready:9
ARGV[1] now (ms)   ARGV[2] queue id   ARGV[3] limit
Returns: number promoted
]]
-- @include "promote-due"
-- @include "refresh-due"
local now = tonumber(ARGV[1])
local ready = {}
for p = 0, 9 do ready[p + 1] = KEYS[5 + p] end
local promoted = promoteDue(KEYS[1], KEYS[2], ready, now, tonumber(ARGV[3]))
refreshDue(KEYS[4], ARGV[2], KEYS[2], KEYS[3])
return promoted
