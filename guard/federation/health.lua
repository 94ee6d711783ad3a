-- Cluster health shared by the fleet: publish this replica's view of a cluster's endpoints and
-- read every live replica's, in one call. Run with EVAL (Redis caches it by its SHA).
-- KEYS[1]: the cluster's views hash (field: replica id, value: "<redis ms> <json>").
-- ARGV: replica id, ttl ms, this replica's view (JSON).
-- Returns {redis now ms, replica, value, replica, value, ...} for the views younger than ttl,
-- and drops the older ones (replicas that stopped publishing). Time is Redis's, so replicas
-- with skewed clocks agree on every view's age.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now) .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
local out = {string.format('%d', now)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local stamp = tonumber(string.match(all[i + 1], '^(%d+) '))
  if stamp == nil or stamp + ttl < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
