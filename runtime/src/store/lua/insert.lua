-- KEYS[1] room hash; ARGV: base, id, status, last ping ('' or millis), field/value pairs...
local key, base, id = KEYS[1], ARGV[1], ARGV[2]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, unpack(ARGV, 5))
redis.call('ZADD', base .. 'rooms', 0, id)
redis.call('SADD', base .. 'status:' .. ARGV[3], id)
if ARGV[4] ~= '' then redis.call('ZADD', base .. 'pings', ARGV[4], id) end
return 1
