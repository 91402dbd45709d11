--[[ Record a new task as queued, with its request message (kept until the task finishes: the outbox
  sweeper and the reaper re-send it from here) and `sent` = 0 until RocketMQ confirmed it.
  The caller wrote the outbox hint for this id first (hint.lua, another slot).
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] user_id   ARGV[2] ttl (s)   ARGV[3] request message body
  ARGV[4] tenant whose API key submitted it ("" none): its owner for GET (lib/http/auth.ts)
  Returns: 1 created, 0 a task (or a tombstone) with this id exists (nothing written)
]]
--- @include "events"
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "status", "queued", "user_id", ARGV[1], "attempts", 0,
  "created_at", now, "updated_at", now, "message", ARGV[3], "sent", 0)
if ARGV[4] and ARGV[4] ~= "" then redis.call("HSET", KEYS[1], "tenant", ARGV[4]) end
redis.call("EXPIRE", KEYS[1], ARGV[2])
redis.call("SET", KEYS[2], "queued", "EX", ARGV[2])
status_event(KEYS[1], KEYS[3], "queued", now)
return 1
