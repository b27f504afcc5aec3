-- KEYS[1] room hash; ARGV: base, id. Answers 1 when the room existed.
local key, base, id = KEYS[1], ARGV[1], ARGV[2]
local status = redis.call('HGET', key, 'status')
if not status then return 0 end
redis.call('DEL', key)
redis.call('ZREM', base .. 'rooms', id)
redis.call('ZREM', base .. 'pings', id)
redis.call('SREM', base .. 'status:' .. status, id)
return 1
