--[[ stats: counts of one queue, read in one atomic step.
KEYS[1..10] ready:0 .. ready:9   KEYS[11] scheduled   KEYS[12] leased   KEYS[13] dead
KEYS[14] completed (a list)   KEYS[15] moving
Returns 15 counts in KEYS order
]]
local out = {}
for i = 1, 10 do out[i] = redis.call('LLEN', KEYS[i]) end
for i = 11, 15 do
  if i == 14 then out[i] = redis.call('LLEN', KEYS[i]) else out[i] = redis.call('ZCARD', KEYS[i]) end
end
return out
