-- KEYS[1] room hash; ARGV: base, id, instance status, address JSON ('' keeps it), now,
-- then the field/value pairs of a new record, used when the store does not know the room.
local key, base, id, now = KEYS[1], ARGV[1], ARGV[2], ARGV[5]
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, unpack(ARGV, 6))
  redis.call('ZADD', base .. 'rooms', 0, id)
  redis.call('SADD', base .. 'status:' .. redis.call('HGET', key, 'status'), id)
end
redis.call('HSET', key, 'instance', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', key, 'address', ARGV[4]) end
return answer(recompute(key, base, id, now), key)
