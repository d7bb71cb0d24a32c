--[[ get: reads one task of one queue.
KEYS[1] tasks   KEYS[2] payloads   KEYS[3] results
ARGV[1] id
Returns { record JSON, payload, result } or {} when the queue holds no such task
]]
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {} end
return { raw, redis.call('HGET', KEYS[2], ARGV[1]) or '', redis.call('HGET', KEYS[3], ARGV[1]) or '' }
