-- guard's Redis-side logic: GCRA leases, membership heartbeats, quarantine.
-- Loaded as a Redis 7 function library (FUNCTION LOAD REPLACE, FCALL); the same body is run
-- through EVALSHA on Redis 6 (the Python side appends the dispatch line). Time always comes
-- from redis.call('TIME') so that replicas with skewed clocks agree. Never returns floats:
-- Redis truncates Lua numbers, so every figure crosses the wire as an integer.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Grant up to `want` tokens from each GCRA bucket ("allowAtMost"): per key three args,
-- emission interval T (us per token), tolerance tau = burst * T (us), and want (tokens).
-- Returns per key {granted, tat - now (us)} flattened.
local function lease(keys, args)
  local now = now_us()
  local out = {}
  for i, key in ipairs(keys) do
    local t = tonumber(args[3 * i - 2])
    local tau = tonumber(args[3 * i - 1])
    local want = tonumber(args[3 * i])
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    -- A clock step back at failover must not lock a tenant out for longer than tau.
    if tat > now + tau then tat = now + tau end
    local available = math.floor((now + tau - tat) / t)
    local granted = math.max(0, math.min(want, available))
    if granted > 0 then
      tat = tat + granted * t
      redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    end
    out[#out + 1] = granted
    out[#out + 1] = math.floor(tat - now)
  end
  return out
end

-- Heartbeat: keys {cluster zset, fleet zset}; args {replica id, ttl ms}. Returns {n_cluster, n_fleet}.
local function heartbeat(keys, args)
  local now_ms = math.floor(now_us() / 1000)
  local ttl = tonumber(args[2])
  local counts = {}
  for i, key in ipairs(keys) do
    redis.call('ZADD', key, now_ms, args[1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - ttl)
    redis.call('PEXPIRE', key, ttl * 10)
    counts[i] = redis.call('ZCARD', key)
  end
  return counts
end

-- Enter a client into quarantine and tell every replica. Escalates: the k-th strike within
-- `memory` ms lasts base * 2^(k-1) ms, at most `max` ms.
local function enter(entries, strikes_key, client, policy, base, max, memory, channel)
  local now_ms = math.floor(now_us() / 1000)
  local strikes = 1
  local prev = redis.call('HGET', strikes_key, client)
  if prev then
    local count, seen = string.match(prev, '^(%d+):(%d+)$')
    if count and tonumber(seen) + memory > now_ms then strikes = tonumber(count) + 1 end
  end
  redis.call('HSET', strikes_key, client, strikes .. ':' .. now_ms)
  local ttl = math.floor(math.min(max, base * 2 ^ (strikes - 1)))
  local entry = cjson.encode({client = client, policy = policy, level = strikes,
                              since = now_ms, ['until'] = now_ms + ttl})
  redis.call('HSET', entries, client, entry)
  redis.call('PUBLISH', channel, 'add ' .. entry)
  return entry
end

-- The live entry of `client`, or nil.
local function live_entry(entries, client, now_ms)
  local live = redis.call('HGET', entries, client)
  if live and cjson.decode(live)['until'] > now_ms then return live end
  return nil
end

-- Quarantine a client: keys {entries hash, strikes hash}; args {client, policy, base ms, max ms,
-- strike memory ms, channel}. A client already quarantined keeps its entry (no second strike
-- when two replicas cross the threshold at once).
local function quarantine(keys, args)
  local live = live_entry(keys[1], args[1], math.floor(now_us() / 1000))
  if live then return live end
  return enter(keys[1], keys[2], args[1], args[2], tonumber(args[3]), tonumber(args[4]),
               tonumber(args[5]), args[6])
end

-- Count rejections fleet-wide, batched per replica tick: keys {entries, strikes, one counter per
-- client}; args {strike memory ms, channel, escalation cap, then per client: client, policy,
-- count, threshold, window ms, ttl ms}. A counter lives one window from its first rejection; a
-- client whose fleet-wide count reaches its threshold within it is quarantined (unless it already
-- is). Returns the new entries.
local function rejections(keys, args)
  local memory, channel, cap = tonumber(args[1]), args[2], tonumber(args[3])
  local now_ms = math.floor(now_us() / 1000)
  local out = {}
  for i = 3, #keys do
    local j = 3 + (i - 3) * 6
    local client, policy = args[j + 1], args[j + 2]
    local count, threshold = tonumber(args[j + 3]), tonumber(args[j + 4])
    local window, ttl = tonumber(args[j + 5]), tonumber(args[j + 6])
    local total = redis.call('INCRBY', keys[i], count)
    if total == count then redis.call('PEXPIRE', keys[i], window) end
    if total >= threshold then
      redis.call('DEL', keys[i])
      if not live_entry(keys[1], client, now_ms) then
        out[#out + 1] = enter(keys[1], keys[2], client, policy, ttl, ttl * cap, memory, channel)
      end
    end
  end
  return out
end

-- Live entries: keys {entries hash}; drops expired ones. Returns {now ms, entry...}.
local function quarantined(keys, args)
  local now_ms = math.floor(now_us() / 1000)
  local out = {tostring(now_ms)}
  local all = redis.call('HGETALL', keys[1])
  for i = 1, #all, 2 do
    local entry = cjson.decode(all[i + 1])
    if entry['until'] <= now_ms then
      redis.call('HDEL', keys[1], all[i])
    else
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
