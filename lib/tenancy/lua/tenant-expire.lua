--[[ Tenancy reaper, on Redis's clock: list a tenant's slots held past their time, then extend each
  (its task still runs under a live lease) or drop it (the worker died, or a reserved task's message
  never came).
  KEYS[1] running zset   KEYS[2] parked zset (drop with "park" only; same hash tag)
  ARGV[1] "list" | "extend" | "drop"   ARGV[2] task id   ARGV[3] extend: held until (ms); drop: the
  time the slot was seen expired (it is dropped only if nothing extended it since)
  ARGV[4] drop: "park" to park the task again, first in line, in the same step: its task still waits,
  so the release that reserved the slot may never have sent it (its worker died between taking it off
  the parked set and the publish), and nothing else would (a parked task's message was acked)
  Returns: list: {now, id, id, ...} (at most 100 ids); extend, drop: 1 changed, 0 not
]]
if ARGV[1] == "list" then
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, 100)
  table.insert(ids, 1, tostring(now))
  return ids
end
local held = tonumber(redis.call("ZSCORE", KEYS[1], ARGV[2]) or "")
if not held then return 0 end
if ARGV[1] == "extend" then
  if tonumber(ARGV[3]) <= held then return 0 end
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[2])
  return 1
end
if held > tonumber(ARGV[3]) then return 0 end
redis.call("ZREM", KEYS[1], ARGV[2])
if ARGV[4] == "park" then redis.call("ZADD", KEYS[2], "NX", 0, ARGV[2]) end
return 1
