-- Settle one request: release its hold (if it has not expired already) and add the actual
-- cost to every budget. Returns, per budget, the spend before and after (soft-limit checks).
--
-- KEYS[1] holds zset   KEYS[2] holds hash   KEYS[3..2+nb] budget hashes
-- ARGV: rid, micros, tokens, nb, tpm_adjust, window, window_prefix, only_if_held (1: a retry
--       after a failed call, applied only if the hold is still there), then tpm window names
local rid, micros, tokens, nb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local adjust, window, wprefix = tonumber(ARGV[5]), ARGV[6], ARGV[7]

local rec = redis.call('HGET', KEYS[2], rid)
if not rec and ARGV[8] == '1' then return {} end
if rec then
  local parts = {}
  for p in string.gmatch(rec, '[^|]+') do parts[#parts + 1] = p end
  local m, k = tonumber(parts[1]), tonumber(parts[2])
  for i = 3, #parts do
    redis.call('HINCRBY', parts[i], 'held', -m)
    redis.call('HINCRBY', parts[i], 'htok', -k)
  end
  redis.call('HDEL', KEYS[2], rid)
  redis.call('ZREM', KEYS[1], rid)
end

local out = {}
for i = 1, nb do
  local after = redis.call('HINCRBY', KEYS[2 + i], 'spent', micros)
  redis.call('HINCRBY', KEYS[2 + i], 'tok', tokens)
  out[#out + 1] = tostring(after - micros)
  out[#out + 1] = tostring(after)
end
if adjust ~= 0 then
  for j = 9, #ARGV do
    local wkey = wprefix .. ARGV[j] .. ':' .. window
    if redis.call('EXISTS', wkey) == 1 then redis.call('INCRBY', wkey, adjust) end
  end
end
return out
