-- Admit one request atomically: purge expired holds, check every budget and rate window of
-- key/team/tenant, then hold the estimate and count the request. Nothing changes on refusal.
-- All keys share the tenant's hash tag, so the script runs on one Redis Cluster slot.
--
-- KEYS[1] holds zset (request id -> expiry)   KEYS[2] holds hash (request id -> record)
-- KEYS[3..2+nb] budget hashes                  (fields: spent, held, tok, htok)
-- ARGV: rid, micros, tokens, hold_ttl_s, nb, window_prefix, nr,
--       then per budget: limit_micros (-1 none), limit_tokens (-1 none), ttl_s (0 none)
--       then per rate:   name, limit, need
local rid, micros, tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local hold_ttl, nb, wprefix, nr = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6

local function release(record)
  -- record: "micros|tokens|key1|key2|..."
  local parts = {}
  for p in string.gmatch(record, '[^|]+') do parts[#parts + 1] = p end
  local m, k = tonumber(parts[1]), tonumber(parts[2])
  for i = 3, #parts do
    redis.call('HINCRBY', parts[i], 'held', -m)
    redis.call('HINCRBY', parts[i], 'htok', -k)
  end
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
for _, old in ipairs(expired) do
  local rec = redis.call('HGET', KEYS[2], old)
  if rec then release(rec) end
  redis.call('HDEL', KEYS[2], old)
  redis.call('ZREM', KEYS[1], old)
end

local fresh = {}  -- budget hashes this script creates: only those need an EXPIRE
local a = 8
for i = 1, nb do
  local lm, lt = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local v = redis.call('HMGET', KEYS[2 + i], 'spent', 'held', 'tok', 'htok')
  fresh[i] = not (v[1] or v[2] or v[3] or v[4])
  local spent, held = tonumber(v[1] or 0), tonumber(v[2] or 0)
  local tok, htok = tonumber(v[3] or 0), tonumber(v[4] or 0)
  if lm >= 0 and spent + held + micros > lm then return {'budget', i, 0, 0} end
  if lt >= 0 and tok + htok + tokens > lt then return {'budget', i, 0, 0} end
  a = a + 3
end

local window = math.floor(now / 60)
local frac = (now % 60) / 60
local ra = a
for j = 1, nr do
  local name, limit, need = ARGV[ra], tonumber(ARGV[ra + 1]), tonumber(ARGV[ra + 2])
  local cur = tonumber(redis.call('GET', wprefix .. name .. ':' .. window) or 0)
  local prev = tonumber(redis.call('GET', wprefix .. name .. ':' .. (window - 1)) or 0)
  if prev * (1 - frac) + cur + need > limit then
    return {'rate', j, tostring(cur), tostring(prev), tostring(frac)}
  end
  ra = ra + 3
end

local names = {}
a = 8
for i = 1, nb do
  local key, ttl = KEYS[2 + i], tonumber(ARGV[a + 2])
  redis.call('HINCRBY', key, 'held', micros)
  redis.call('HINCRBY', key, 'htok', tokens)
  if ttl > 0 and fresh[i] then redis.call('EXPIRE', key, ttl) end
  names[#names + 1] = key
  a = a + 3
end
ra = a
for j = 1, nr do
  local wkey = wprefix .. ARGV[ra] .. ':' .. window
  local need = tonumber(ARGV[ra + 2])
  if redis.call('INCRBY', wkey, need) == need then redis.call('EXPIRE', wkey, 150) end
  ra = ra + 3
end
redis.call('ZADD', KEYS[1], now + hold_ttl, rid)
redis.call('HSET', KEYS[2], rid, micros .. '|' .. tokens .. '|' .. table.concat(names, '|'))
return {'ok', 0, tostring(window), tostring(frac)}
