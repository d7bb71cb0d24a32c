--[[ get: reads one task of one queue.
KEYS[1] tasks   KEYS[2] state   KEYS[3] payloads   KEYS[4] results
ARGV[1] id
Returns { record JSON, state, payload, result } or {} when the queue holds no such task
]]
local state = redis.call('HGET', KEYS[2], ARGV[1])
if not state then return {} end
return {
  redis.call('HGET', KEYS[1], ARGV[1]) or '',
  state,
  redis.call('HGET', KEYS[3], ARGV[1]) or '',
  redis.call('HGET', KEYS[4], ARGV[1]) or '',
}
