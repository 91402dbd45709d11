--[[ Take one token from a tenant's POST /tasks bucket, on Redis's clock: every API replica shares
  the bucket and the clock, so the limit is exact however many replicas serve the tenant.
  KEYS[1] tenant limits hash (rate: tokens/s, burst)   KEYS[2] bucket hash (tokens, ts ms)
  (both under the tenant's hash tag)
  ARGV[1] cost (tokens to take)
  Returns: {1, remaining, 0, full_ms, burst, rate} taken; {0, remaining, retry_ms, full_ms, burst, rate}
  refused (retry_ms: until enough tokens are back; rate: the hash's string as stored, since a Lua
  number reaches the client truncated to an integer, and rate x 1000 still lost any rate under
  0.001/s); {2, 0, 0, 0, 0, 0} the tenant has no rate limit.
  remaining is rounded down, retry_ms and full_ms (until the bucket is full again) up.
]]
local rate_s = redis.call("HGET", KEYS[1], "rate")
local rate = tonumber(rate_s or "")
if not rate or rate <= 0 then return {2, 0, 0, 0, 0, 0} end
local burst = tonumber(redis.call("HGET", KEYS[1], "burst") or "") or math.max(1, math.ceil(rate))
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call("HMGET", KEYS[2], "tokens", "ts")
local tokens = tonumber(b[1] or "") or burst
local ts = tonumber(b[2] or "") or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local cost = tonumber(ARGV[1])
local allowed, retry = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call("HSET", KEYS[2], "tokens", string.format("%.6f", tokens), "ts", now)
-- Once full again the bucket is the same as no bucket: let it go.
redis.call("PEXPIRE", KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, math.floor(tokens), retry, math.ceil((burst - tokens) * 1000 / rate), burst, rate_s}
