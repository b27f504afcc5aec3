-- Shared by every room-store script. Keys of one scheduler share the hash tag in `base`
-- ("{prefix}:{scheduler}:"), so a script only touches one slot.
--
-- compose() is core::room::compose_status, and recompute() its use in GameRoom::recompute
-- with the allocation rule; the store's contract tests check every combination against the
-- Rust code, so the two cannot drift apart unnoticed.
local function compose(ping, instance, matches, max)
  if instance == 'error' then return 'error' end
  if ping == 'terminated' then return 'terminated' end
  if ping == 'terminating' then return 'terminating' end
  if instance == 'terminating' then return 'terminating' end
  if instance == 'unknown' or instance == 'pending' then return 'pending' end
  if ping == '' then return 'unready' end
  if max > 1 then
    if matches == 0 then return 'ready' end
    if matches >= max then return 'occupied' end
    return 'active'
  end
  if ping == 'occupied' then return 'occupied' end
  return 'ready'
end

-- The fields the status is composed from, in settle()'s order; HMGET them with unpack().
local STATUS_FIELDS = { 'ping', 'instance', 'matches', 'max', 'alloc', 'status' }

-- Composes the status from `f` (STATUS_FIELDS' values as they are once `writes` are made),
-- keeps the per-status sets in step and makes `writes` (field/value pairs) with what the
-- status needs in one HSET. Returns the status before and after.
local function settle(key, base, id, now, f, writes)
  local status = compose(f[1], f[2], tonumber(f[3]) or 0, tonumber(f[4]) or 1)
  local alloc = tonumber(f[5])
  if status == 'ready' and alloc and alloc > tonumber(now) then status = 'allocated' end
  -- Cleared only when set: most pings change nothing, and a write costs Redis more than a read.
  if status ~= 'allocated' and alloc then
    writes[#writes + 1] = 'alloc'
    writes[#writes + 1] = ''
  end
  local previous = f[6]
  if status ~= previous then
    if previous then redis.call('SREM', base .. 'status:' .. previous, id) end
    redis.call('SADD', base .. 'status:' .. status, id)
    writes[#writes + 1] = 'status'
    writes[#writes + 1] = status
    writes[#writes + 1] = 'changed'
    writes[#writes + 1] = now
  end
  if #writes > 0 then redis.call('HSET', key, unpack(writes)) end
  return previous, status
end

-- Recomputes the stored status after other writes; returns the status the room had before.
local function recompute(key, base, id, now)
  local f = redis.call('HMGET', key, unpack(STATUS_FIELDS))
  return (settle(key, base, id, now, f, {}))
end

-- { previous status, field, value, field, value, ... }
local function answer(previous, key)
  local out = { previous }
  for _, v in ipairs(redis.call('HGETALL', key)) do out[#out + 1] = v end
  return out
end
