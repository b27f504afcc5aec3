-- ARGV: base, room key prefix, now, until, selector JSON ('' for none).
-- Picks a ready room (or one whose allocation expired) matching the selector, marks it
-- allocated until `until` and answers it; {} when none qualifies. Atomic, as scripts are.
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

local function take(id)
  local key = room_prefix .. id
  redis.call('HSET', key, 'alloc', untill)
  local previous = recompute(key, base, id, now)
  return answer(previous, key)
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
