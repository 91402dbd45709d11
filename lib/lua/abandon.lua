--[[ The client is told its task was NOT accepted (RocketMQ refused or timed out, or Redis did not
  answer the create in time): make sure it never runs. A task nobody touched (queued or scheduled, no attempt,
  send not confirmed), or no task at all (a create that may still land), becomes a tombstone:
  `status` = "rejected", so a late create is refused (create.lua), a late message is skipped
  (claim.lua), the outbox drops its hint, and GET answers 404.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot; removed too)
  ARGV[1] ttl (s) of the tombstone, plus the wait until a delayed task's run_at: its timer message
          comes then, and must find the tombstone, not nothing (a claim would adopt it and run it)
  Returns: 1 tombstoned (or was already), 0 left alone: a worker or a confirmed send got there first
]]
--- @include "events"
local st = redis.call("HMGET", KEYS[1], "status", "attempts", "sent", "run_at")
if st[1] == "rejected" then return 1 end
if st[1] and not ((st[1] == "queued" or st[1] == "scheduled") and tonumber(st[2] or "0") == 0 and st[3] ~= "1") then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = task_ttl(ARGV[1], st[4], now) -- run_at read before the DEL
redis.call("DEL", KEYS[1], KEYS[2])
if KEYS[3] then redis.call("DEL", KEYS[3]) end
redis.call("HSET", KEYS[1], "status", "rejected", "updated_at", now)
redis.call("EXPIRE", KEYS[1], ttl)
return 1
