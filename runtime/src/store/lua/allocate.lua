-- ARGV: base, room key prefix, now, until, selector JSON ('' for none).
-- Picks a ready room (or one whose allocation expired) matching the selector, marks it
-- allocated until `until` and answers { id, address }; {} when none qualifies. Atomic, as
-- scripts are. Only what a matchmaker is told: the whole record is what reads are for.
local base, room_prefix, now, untill, selector_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local selector = nil
if selector_json ~= '' then selector = cjson.decode(selector_json) end

local function matches(key)
  if not selector then return true end
  local raw = redis.call('HGET', key, 'metadata')
  local ok, metadata = pcall(cjson.decode, raw or '{}')
  if not ok or type(metadata) ~= 'table' then return false end
  for k, want in pairs(selector) do
    local have = metadata[k]
    if have == nil or have == cjson.null then return false end
    if type(have) == 'boolean' then have = tostring(have) end
    if type(have) == 'table' then return false end
    if tostring(have) ~= want then return false end
  end
  return true
end

-- The status fields, then the address the answer carries: one read, and the allocation is
-- written by settle()'s one HSET with the status it leads to.
local TAKE_FIELDS = { unpack(STATUS_FIELDS) }
TAKE_FIELDS[#TAKE_FIELDS + 1] = 'address'

local function take(id)
  local key = room_prefix .. id
  local f = redis.call('HMGET', key, unpack(TAKE_FIELDS))
  f[5] = untill -- STATUS_FIELDS[5] is alloc
  settle(key, base, id, now, f, { 'alloc', untill })
  return { id, f[#TAKE_FIELDS] or '' }
end

if not selector then
  local id = redis.call('SRANDMEMBER', base .. 'status:ready')
  if id then return take(id) end
else
  for _, id in ipairs(redis.call('SMEMBERS', base .. 'status:ready')) do
    if matches(room_prefix .. id) then return take(id) end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', base .. 'status:allocated')) do
  local key = room_prefix .. id
  local alloc = tonumber(redis.call('HGET', key, 'alloc'))
  if (not alloc or alloc <= tonumber(now)) and matches(key) then return take(id) end
end
return {}
