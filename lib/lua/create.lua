--[[ Record a new task as queued, with its request message (kept until the task finishes: the outbox
  sweeper and the reaper re-send it from here) and `sent` = 0 until RocketMQ confirmed it.
  The caller wrote the outbox hint for this id first (hint.lua, another slot).
  The scheduled variant (a delayed task, ARGV[5] set): status `scheduled` with `run_at` until a
  worker claims it (claim.lua treats it as queued); its keys live TTL plus the wait, so a task
  delayed by more than the TTL is still there when it is due.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] user_id   ARGV[2] ttl (s)   ARGV[3] request message body
  ARGV[4] tenant whose API key submitted it ("" none): its owner for GET (lib/http/auth.ts)
  ARGV[5] run_at (ms since the epoch) of a delayed task, or "" (or absent) to run at once
  ARGV[6] answer by (ms, Redis time): after it the API no longer waits for this create and answers
          503, so it must not land (lib/state/redis-clock.ts); "" (or absent) no deadline
  Returns: created_at (ms, > 0) created (the listing index, another slot, is written with it:
           lib/state/user-index.ts); 0 a task (or a tombstone) with this id exists (nothing written);
           -1 arrived after its deadline (nothing written)
]]
--- @include "events"
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] and ARGV[6] ~= "" and now > tonumber(ARGV[6]) then return -1 end
local status, ttl = "queued", tonumber(ARGV[2])
redis.call("HSET", KEYS[1], "status", status, "user_id", ARGV[1], "attempts", 0,
  "created_at", now, "updated_at", now, "message", ARGV[3], "sent", 0)
if ARGV[4] and ARGV[4] ~= "" then redis.call("HSET", KEYS[1], "tenant", ARGV[4]) end
if ARGV[5] and ARGV[5] ~= "" then
  status = "scheduled"
  redis.call("HSET", KEYS[1], "status", status, "run_at", ARGV[5])
  ttl = ttl + math.max(0, math.ceil((tonumber(ARGV[5]) - now) / 1000))
end
redis.call("EXPIRE", KEYS[1], ttl)
redis.call("SET", KEYS[2], status, "EX", ttl)
status_event(KEYS[1], KEYS[3], status, now)
return now
