"""Lua scripts run by Redis as one atomic step each (so no other replica interleaves)."""

from __future__ import annotations

# KEYS: 1 latest headers (hash window -> "limit|remaining|reset"), 2 reservations (zset id ->
# expiry), 3 their amounts (hash id -> "requests|tokens"), 4 cool-down (string: until), then the
# budget hashes (replica -> spend) and the plan logs (zset "id|amount" -> admitted at).
# ARGV: now, threshold, need requests, need tokens, id, ttl, predictive (1/0), budget count B,
# plan count P, then B x (limit) and P x (name, unit, limit, seconds).
# Returns {"ok"} or {kind, window, left, limit, pending, wait} as strings.
RESERVE = r"""
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local need = {requests = tonumber(ARGV[3]), tokens = tonumber(ARGV[4])}
local id, ttl, predictive = ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local nbudget, nplan = tonumber(ARGV[8]), tonumber(ARGV[9])
local cool = tonumber(redis.call('GET', KEYS[4]) or '0')
if cool > now then
  return {'cool_down', '', '0', '0', '0', tostring(cool - now)}
end
for i = 1, nbudget do
  local limit = tonumber(ARGV[9 + i])
  local spent = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[4 + i])) do spent = spent + tonumber(v) end
  if spent >= limit then
    return {'budget', KEYS[4 + i], tostring(spent), tostring(limit), '0', ''}
  end
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
local plan_base = 9 + nbudget
if predictive then
  local pending = {requests = 0, tokens = 0}
  for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
    local r, t = string.match(v, '^([^|]*)|([^|]*)$')
    pending.requests = pending.requests + tonumber(r)
    pending.tokens = pending.tokens + tonumber(t)
  end
  local reported = {}
  local headers = redis.call('HGETALL', KEYS[1])
  for i = 1, #headers, 2 do
    local name = headers[i]
    local unit = nil
    if string.sub(name, 1, 6) == 'tokens' then unit = 'tokens'
    elseif string.sub(name, 1, 8) == 'requests' then unit = 'requests' end
    local l, r, z = string.match(headers[i + 1], '^([^|]*)|([^|]*)|([^|]*)$')
    local limit, remaining, reset = tonumber(l), tonumber(r), tonumber(z)
    if unit and limit and limit > 0 then
      local passed = reset ~= nil and now >= reset
      if passed then remaining = limit end
      if remaining ~= nil then
        reported[name] = true
        local left = remaining - pending[unit] - need[unit]
        if left < threshold * limit then
          local wait = ''
          if not passed and reset ~= nil then wait = tostring(reset - now) end
          return {'predicted', name, tostring(left), tostring(limit), tostring(pending[unit]), wait}
        end
      end
    end
  end
  for i = 1, nplan do
    local at = plan_base + (i - 1) * 4
    local name, unit = ARGV[at + 1], ARGV[at + 2]
    local limit, seconds = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
    local log = KEYS[4 + nbudget + i]
    if not reported[name] then
      redis.call('ZREMRANGEBYSCORE', log, '-inf', now - seconds)
      local used = 0
      for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
        used = used + tonumber(string.match(m, '|([^|]*)$'))
      end
      local left = limit - used - need[unit]
      if left < threshold * limit then
        return {'predicted', name .. ' (plan)', tostring(left), tostring(limit), '0', ''}
      end
    end
  end
end
redis.call('ZADD', KEYS[2], now + ttl, id)
redis.call('HSET', KEYS[3], id, ARGV[3] .. '|' .. ARGV[4])
redis.call('EXPIRE', KEYS[2], math.ceil(ttl) + 60)
redis.call('EXPIRE', KEYS[3], math.ceil(ttl) + 60)
for i = 1, nplan do
  local at = plan_base + (i - 1) * 4
  local amount = need[ARGV[at + 2]]
  if amount > 0 then
    local log = KEYS[4 + nbudget + i]
    -- Trimmed here too: the check above skips windows the headers report (and every window
    -- when not predictive), and a busy fleet renews the key's expiry on every call.
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - tonumber(ARGV[at + 4]))
    redis.call('ZADD', log, now, id .. '|' .. tostring(amount))
    redis.call('EXPIRE', log, math.ceil(tonumber(ARGV[at + 4])) + 1)
  end
end
return {'ok'}
"""

# KEYS: 1 latest headers, 2 reservations, 3 amounts. ARGV: id, headers' time ('' = no headers),
# then pairs (window, "limit|remaining|reset"). Headers older than the stored ones are dropped,
# so a slow replica never puts back an account that a newer response superseded.
RELEASE = r"""
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local at = tonumber(ARGV[2])
if at == nil or #ARGV < 3 then return 0 end
local previous = tonumber(redis.call('HGET', KEYS[1], '@at') or '0')
if at < previous then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@at', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""

# KEYS: 1 cool-down. ARGV: until (unix seconds). Only ever extends a cool-down.
COOL_DOWN = r"""
local until = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until > current then
  local ms = math.max(1, math.ceil((until - tonumber(ARGV[2])) * 1000))
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
end
return 0
"""

# KEYS: 1 budget hash of one period (replica -> spend), then one alert key per threshold.
# ARGV: replica, its spend, TTL (s) of the alert keys, the period's limit, then the thresholds
# (percent) in KEYS' order. Publishes the spend, sums the fleet's and claims each threshold the
# sum reached with SET NX: the replica that claims it is the only one that alerts, once per
# threshold and period for the whole fleet. Returns {fleet spend, claimed percents...}.
SPEND = r"""
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 3456000)
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
local ttl, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {tostring(total)}
for i = 2, #KEYS do
  local percent = tonumber(ARGV[3 + i])
  if total >= limit * percent / 100 and redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ttl) then
    table.insert(out, tostring(percent))
  end
end
return out
"""
