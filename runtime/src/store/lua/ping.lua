-- KEYS[1] room hash; ARGV: base, id, ping status, running matches, has metadata (0/1),
-- metadata JSON, now (millis). Answers {} for an unknown room, {status} when the status did
-- not change (most pings: nothing is read back), else {previous status, field, value, ...}.
-- One read and one write of the hash: the ping's fields go in the same HSET as the status.
local key, base, id, now = KEYS[1], ARGV[1], ARGV[2], ARGV[7]
local f = redis.call('HMGET', key, unpack(STATUS_FIELDS))
-- Every record has a status; a hash without one is checked the long way.
if not f[6] and redis.call('EXISTS', key) == 0 then return {} end
f[1], f[3] = ARGV[3], ARGV[4]
local writes = { 'ping', ARGV[3], 'matches', ARGV[4], 'last_ping', now }
if ARGV[5] == '1' then
  writes[#writes + 1] = 'metadata'
  writes[#writes + 1] = ARGV[6]
end
local previous, status = settle(key, base, id, now, f, writes)
redis.call('ZADD', base .. 'pings', now, id)
if previous == status then return { status } end
return answer(previous, key)
