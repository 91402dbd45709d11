--[[ A hint in one bucket's zset (outbox or stalled, lib/keys.ts): an id and when to look at it.
  Hints are written before the per-task transition that needs them and verified against the task by
  whoever reads them (outbox-check.lua, reap.lua), so a stale hint is harmless.
  KEYS[1] bucket zset
  ARGV[1] mode: "add" (score = Redis time + ARGV[3] ms) | "at" (score = ARGV[3]) |
                "drop" (remove, only if the score is still ARGV[3]: nobody re-added it since it was read)
  ARGV[2] task id   ARGV[3] ms (see mode)
  Returns: 1 written or removed, 0 left alone ("drop" whose score changed)
]]
if ARGV[1] == "drop" then
  local s = redis.call("ZSCORE", KEYS[1], ARGV[2])
  if s and tonumber(s) == tonumber(ARGV[3]) then
    redis.call("ZREM", KEYS[1], ARGV[2])
    return 1
  end
  return 0
end
local score = tonumber(ARGV[3])
if ARGV[1] == "add" then
  local t = redis.call("TIME")
  score = score + tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call("ZADD", KEYS[1], score, ARGV[2])
return 1
