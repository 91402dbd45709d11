--[[ A worker claims a task to run it: queued -> running, or running -> running when the previous
  runner's lease has expired (it died). Times are Redis's own (TIME), never a host's clock.
  A task this system never recorded (sent by another producer, or expired) is adopted as queued
  first, with the message that brought it. A task whose result is recorded but not yet published
  (`outcome`, finish.lua) is claimed to publish only: the agent does not run again. A task whose
  runs so far all began and never ended (attempts = max: each run's worker died or lost its lease)
  is failed instead of run again.
  The caller wrote the stalled hint for this id first (hint.lua, another slot).
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] claim token   ARGV[2] lease (ms)   ARGV[3] ttl (s)   ARGV[4] user_id   ARGV[5] max attempts
  ARGV[6] request message body, kept when adopting   ARGV[7] "probe": the body was left out (the usual
  case needs none), so for an unknown task return 4 instead of adopting it; "adopt": adopt it
  ARGV[8] "isolated" when the caller runs it alone in its process (a suspect, below), else ""
  ARGV[9] tenant named by the message ("" none), kept when adopting: its owner for GET (lib/http/auth.ts)
  A queued task waiting for its retry's backoff (`back_at`, e.g. an LLM's Retry-After) is not run by
  a copy of its message that comes earlier (an outbox re-send, a stalled re-publish): {3, ms left},
  as for a live lease, so the caller hides the copy until then.
  A task whose earlier run died under a lease (its worker crashed: `crashes` counts those) may be
  what kills workers, and every task running beside it dies with it. For its last allowed attempt
  such a task is a *suspect*: only claimed "isolated" (run alone); otherwise 7 is returned and nothing
  is written. (Isolating every task after any crash would run a killed worker's whole batch one by
  one; the last attempt is the one an innocent task cannot afford to lose.)
  A task whose cancellation was asked (`cancel_at`, cancel.lua) while it ran, and whose run ended
  without recording it (its worker died, or handed it back), is canceled here instead of run:
  {5, attempts, "canceled", ""}.
  Returns: {1, attempt, waited_ms}       claimed; attempt counts runs, this one included; waited_ms:
                                         ms since the task was created, or was due (run_at), for
                                         the queue-wait metric
           {2, status}                   finished (done, failed or canceled) or rejected: ack and skip
           {3, lease_left_ms}            another runner holds a live lease, or the retry's backoff
                                         has this long to go: come back later
           {4, 0}                        unknown task and no body given: call again with the body
           {5, attempts, outcome, data}  claimed to publish the recorded outcome (done: result JSON,
                                         failed: error, canceled: "") and nothing else
           {6, attempts, error}          claimed, and failed now: its runs never finished; publish
                                         the failure like a {5, .., "failed", error}
           {7, crashes}                  a suspect, and ARGV[8] is not "isolated": nothing claimed
  Events: `running` on a claim, `failed` when exhausted, `canceled` (include/events.lua).
]]
--- @include "events"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until", "outcome", "attempts", "result", "error", "crashes", "cancel_at",
  "created_at", "run_at", "back_at")
local status = h[1]
if not status then
  if ARGV[7] == "probe" then return {4, 0} end
  redis.call("HSET", KEYS[1], "status", "queued", "user_id", ARGV[4], "attempts", 0, "created_at", now, "sent", 1)
  if ARGV[6] ~= "" then redis.call("HSET", KEYS[1], "message", ARGV[6]) end
  if ARGV[9] and ARGV[9] ~= "" then redis.call("HSET", KEYS[1], "tenant", ARGV[9]) end
  status = "queued"
  h[5] = "0"
end
if status == "rejected" or status == "done" or ((status == "failed" or status == "canceled") and not h[4]) then return {2, status} end
if h[2] and h[2] ~= ARGV[1] then
  local left = tonumber(h[3] or "0") - now
  if left > 0 then return {3, left} end
end
local lease_until = now + tonumber(ARGV[2])
-- A canceled delayed task is claimed to publish before its run_at: its keys stay past it (task_ttl).
local ttl = task_ttl(ARGV[3], h[11], now)
if h[4] then
  redis.call("HSET", KEYS[1], "owner", ARGV[1], "lease_until", lease_until, "updated_at", now)
  expire_task(KEYS[1], KEYS[3], ttl) -- no event here: the list's TTL is renewed with the hash's
  redis.call("EXPIRE", KEYS[2], ttl)
  if h[4] == "done" then return {5, tonumber(h[5] or "0"), "done", h[6] or ""} end
  if h[4] == "canceled" then return {5, tonumber(h[5] or "0"), "canceled", ""} end
  return {5, tonumber(h[5] or "0"), "failed", h[7] or ""}
end
if h[9] then
  redis.call("HSET", KEYS[1], "status", "canceled", "outcome", "canceled", "owner", ARGV[1],
    "lease_until", lease_until, "finished_at", now, "updated_at", now)
  redis.call("HDEL", KEYS[1], "back_at")
  redis.call("EXPIRE", KEYS[1], ttl)
  redis.call("SET", KEYS[2], "canceled", "EX", ttl)
  status_event(KEYS[1], KEYS[3], "canceled", now)
  return {5, tonumber(h[5] or "0"), "canceled", ""}
end
-- After the cancel check: a task canceled while it waited for its retry ends now, not at back_at.
if status == "queued" and h[12] then
  local left = tonumber(h[12]) - now
  if left > 0 then return {3, left} end
end
local attempts = tonumber(h[5] or "0")
if attempts >= tonumber(ARGV[5]) then
  local err = "its runs never finished: " .. attempts .. " of " .. ARGV[5] ..
    " attempts began and their worker died or lost its lease each time"
  redis.call("HSET", KEYS[1], "status", "failed", "error", err, "outcome", "failed", "owner", ARGV[1],
    "lease_until", lease_until, "finished_at", now, "updated_at", now)
  redis.call("EXPIRE", KEYS[1], ttl)
  redis.call("SET", KEYS[2], "failed", "EX", ttl)
  status_event(KEYS[1], KEYS[3], "failed", now, ',"error":' .. cjson.encode(err))
  return {6, attempts, err}
end
-- Past the busy check, a foreign owner means its lease ran out: that run died.
local died = status == "running" and h[2] ~= false and h[2] ~= ARGV[1]
local crashes = tonumber(h[8] or "0") + (died and 1 or 0)
if crashes > 0 and attempts + 1 >= tonumber(ARGV[5]) and ARGV[8] ~= "isolated" then return {7, crashes} end
if died then redis.call("HINCRBY", KEYS[1], "crashes", 1) end
attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
redis.call("HSET", KEYS[1], "status", "running", "owner", ARGV[1], "lease_until", lease_until,
  "updated_at", now, "started_at", now)
redis.call("HDEL", KEYS[1], "back_at", "progress", "parked")
redis.call("EXPIRE", KEYS[1], ttl)
redis.call("SET", KEYS[2], "running", "EX", ttl)
status_event(KEYS[1], KEYS[3], "running", now, ',"attempt":' .. attempts)
-- Waited since accepted, or since due for a delayed task (its run_at).
local since = math.max(tonumber(h[10] or now) or now, tonumber(h[11] or 0) or 0)
return {1, attempts, math.max(0, now - since)}
