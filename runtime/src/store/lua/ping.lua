-- KEYS[1] room hash; ARGV: base, id, ping status, running matches, has metadata (0/1),
-- metadata JSON, now (millis). Answers {} for an unknown room.
local key, base, id, now = KEYS[1], ARGV[1], ARGV[2], ARGV[7]
if redis.call('EXISTS', key) == 0 then return {} end
redis.call('HSET', key, 'ping', ARGV[3], 'matches', ARGV[4], 'last_ping', now)
if ARGV[5] == '1' then redis.call('HSET', key, 'metadata', ARGV[6]) end
redis.call('ZADD', base .. 'pings', now, id)
return answer(recompute(key, base, id, now), key)
