--[[ compare-and-set: replaces the shard map if it is still at the expected version,
and records the change in the audit log, in one atomic step.
KEYS[1] the shard map (one JSON document with a numeric "version")
KEYS[2] the audit log (a list, newest entry first)
ARGV[1] the expected version (0 = no map stored yet)
ARGV[2] the new map, JSON, already validated, with version = expected + 1
ARGV[3] the audit entry, JSON
ARGV[4] how many audit entries to keep (>= 1)
Commands: GET, SET, LPUSH, LTRIM, LINDEX (KVRocks and Redis alike).
Returns {code, version}:
   0 written (or written already by this same call, sent again); version = the new version
  -1 version conflict, nothing written; version = the stored version (0 = no map)
  -2 the stored value is not JSON with a numeric version, nothing written; version = 0
]]
local stored = 0
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' or type(decoded.version) ~= 'number' then
    return {-2, 0}
  end
  stored = decoded.version
end
-- This very write, stored already: a call ioredis sent again on a new connection
-- after a reconnect lost its reply. Its map is stored and its audit entry (which
-- carries a random id of the call) is the newest; its first run stands, and nothing
-- is written twice. Another writer's same edit in the same millisecond has an entry
-- of its own, and is a conflict.
if current == ARGV[2] and redis.call('LINDEX', KEYS[2], 0) == ARGV[3] then
  return {0, stored}
end
if stored ~= tonumber(ARGV[1]) then
  return {-1, stored}
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return {0, stored + 1}
