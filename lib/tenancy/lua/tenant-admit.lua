--[[ A worker received a task of a tenant: may it run now? Slots are counted across the whole fleet,
  on Redis's clock. A slot is held until a time (the run's lease, extended by the tenancy reaper
  while the task's lease lives), so a worker that dies cannot hold one forever.
  KEYS[1] tenant limits hash (concurrency)   KEYS[2] running zset (task id -> held until, ms)
  KEYS[3] parked zset (task id -> parked at, ms)   (all under the tenant's hash tag)
  ARGV[1] task id   ARGV[2] hold (ms from now)
  Returns: 2 the tenant has no concurrency limit; 1 admitted (a new slot); 3 the task holds a slot
  already (reserved for it when it was released from parking, or another copy of it runs);
  0 parked: the tenant is at its limit, the task waits in the parked set (the caller acks its message)
]]
local limit = tonumber(redis.call("HGET", KEYS[1], "concurrency") or "")
if not limit or limit <= 0 then return 2 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = now + tonumber(ARGV[2])
local held = tonumber(redis.call("ZSCORE", KEYS[2], ARGV[1]) or "")
if held then
  if hold > held then redis.call("ZADD", KEYS[2], hold, ARGV[1]) end
  redis.call("ZREM", KEYS[3], ARGV[1])
  return 3
end
if redis.call("ZCARD", KEYS[2]) < limit then
  redis.call("ZADD", KEYS[2], hold, ARGV[1])
  redis.call("ZREM", KEYS[3], ARGV[1])
  return 1
end
redis.call("ZADD", KEYS[3], "NX", now, ARGV[1])
return 0
