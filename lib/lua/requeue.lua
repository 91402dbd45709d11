--[[ An operator re-queues a task that failed for good (`bun scripts/tasks.ts retry`, `dead-letters
  --replay`, the dashboard's Retry): failed -> queued with its attempts and crash count reset, so the
  claim (claim.lua) runs it again from the start. `sent` is 0 until RocketMQ confirmed the new request
  message (sent.lua): the caller wrote the outbox hint first (hint.lua), so the API's outbox sweeper
  sends it if the caller dies before it could. A task Redis no longer knows (expired) is recorded
  anew from the body given, as create.lua would, unless it was re-queued before: every re-queue
  writes the `replayed` marker (KEYS[4]), which outlives the record (DEAD_LETTER_TTL_SECONDS + 1 h
  against TASK_TTL_SECONDS), so a dead letter replayed, run to done and expired is not run a second
  time by a later replay (a second result downstream, the LLM paid twice).
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  KEYS[4] the task's `replayed` marker (same slot)
  ARGV[1] ttl (s)   ARGV[2] request message body to use when the task kept none ("" none)
  ARGV[3] user_id, for a task Redis no longer knows
  ARGV[4] tenant named by the request message, for a task Redis no longer knows ("" none): its owner
          for GET (lib/http/auth.ts), as create.lua records it
  ARGV[5] the marker's TTL (s): DEAD_LETTER_TTL_SECONDS + 1 h (lib/store.ts REPLAYED_MARGIN_SECONDS)
  Returns: {1, body}     re-queued: publish `body`, then mark it sent
           {0, status}   not failed for good (queued, running, done, rejected, or failed with its
                         failure result still to publish): nothing written
           {2, ""}       unknown (expired, never recorded) and no body given: nothing written
           {3, ""}       failed, but no request message kept and none given: nothing written
           {4, at}       unknown, a body given, but re-queued before (at: ms, the marker's value): its
                         record expired since; nothing written
  Events: `queued` (include/events.lua), with "requeued": true.
]]
--- @include "events"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call("HMGET", KEYS[1], "status", "outcome", "message")
local status = h[1]
local body = h[3]
if not body or body == "" then body = ARGV[2] end
if not status then
  if body == "" then return {2, ""} end
  local before = redis.call("GET", KEYS[4])
  if before then return {4, before} end
  redis.call("HSET", KEYS[1], "user_id", ARGV[3], "created_at", now)
  if ARGV[4] and ARGV[4] ~= "" then redis.call("HSET", KEYS[1], "tenant", ARGV[4]) end
elseif status ~= "failed" or h[2] then
  return {0, status}
elseif body == "" then
  return {3, ""}
end
redis.call("HDEL", KEYS[1], "error", "finished_at", "started_at", "outcome", "crashes", "back_at", "owner",
  "lease_until", "reaped_at", "result")
redis.call("HSET", KEYS[1], "status", "queued", "attempts", 0, "sent", 0, "message", body, "updated_at", now)
redis.call("HINCRBY", KEYS[1], "requeued", 1)
redis.call("EXPIRE", KEYS[1], ARGV[1])
redis.call("SET", KEYS[2], "queued", "EX", ARGV[1])
redis.call("SET", KEYS[4], now, "EX", ARGV[5])
status_event(KEYS[1], KEYS[3], "queued", now, ',"requeued":true')
return {1, body}
