--[[ A client asks to cancel a task (POST /tasks/:id/cancel). Times are Redis's (TIME).
  - queued or scheduled (waiting for its first run, a retry, or a tenant slot), or running under a
    lease that ran out (its worker died): canceled now, with `outcome` = "canceled" (its result message
    still to publish) and the caller's token as owner for ARGV[2] ms, so that no claim publishes it
    meanwhile. The caller publishes the canceled result, then finish.lua "published" with that token;
    if it cannot, it lets the claim go ("release") and the next claim of the task's message (or a
    stalled-task re-send: the caller wrote the stalled hint first) publishes it. The agent never runs.
  - running under a live lease: `cancel_at` is set and the task stays running; the caller tells the
    fleet (PUBLISH on the cancel channel) and the worker running it aborts the agent, then records it
    canceled (finish.lua). A heartbeat (heartbeat.lua) or a claim (claim.lua) that sees `cancel_at`
    does the same, if the notice was lost. Asking again while it winds down answers the same.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] ttl (s), plus the wait until its run_at for a delayed task not yet due (include/events.lua)
  ARGV[2] how long the caller holds the canceled task to publish its result (ms)
  ARGV[3] the caller's claim token
  Returns: {0}                        no such task (or a tombstone): 404
           {1, attempts, user_id}     canceled now: publish the canceled result, then "published"
           {2, status}                finished (done, failed, canceled) or its result is recorded: 409
           {3}                        running: cancel asked, tell the worker (PUBLISH)
  Events: `canceled` when canceled now (include/events.lua); a running task's comes from finish.lua.
]]
--- @include "events"
local h = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until", "outcome", "attempts", "user_id", "cancel_at", "run_at")
local status = h[1]
if not status or status == "rejected" then return {0} end
if status == "done" or status == "failed" or status == "canceled" then return {2, status} end
-- A result recorded under the claim (being published): the run is over, its outcome stands.
if h[4] then return {2, h[4]} end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if status == "running" and h[2] and tonumber(h[3] or "0") > now then
  if not h[7] then redis.call("HSET", KEYS[1], "cancel_at", now, "updated_at", now) end
  return {3}
end
redis.call("HSET", KEYS[1], "status", "canceled", "outcome", "canceled", "owner", ARGV[3],
  "lease_until", now + tonumber(ARGV[2]), "cancel_at", now, "finished_at", now, "updated_at", now)
redis.call("HDEL", KEYS[1], "back_at")
local ttl = task_ttl(ARGV[1], h[8], now)
redis.call("EXPIRE", KEYS[1], ttl)
redis.call("SET", KEYS[2], "canceled", "EX", ttl)
status_event(KEYS[1], KEYS[3], "canceled", now)
return {1, tonumber(h[5] or "0"), h[6] or ""}
