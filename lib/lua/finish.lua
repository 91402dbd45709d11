--[[ Record the end of a claimed run, or what happens to a task without a claim. Times are Redis's.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] claim token ("" for "dead"; "force": the poison copy's own)   ARGV[2] ttl (s)   ARGV[3] mode
  ARGV[4] data   ARGV[5] user_id ("force", "dead": for a task Redis does not know)
  ARGV[6] delay (ms): retry, release; "force": the lease of its claim
  ARGV[7] this run's LLM usage, JSON ("" or absent: none), added to the task's `usage` by "done",
          "failed", "retry" and "canceled" (counters summed over attempts; model: the last one)
  ARGV[8] tenant named by the message ("force", "dead": for a task Redis does not know; "" none)
  Modes (all but "force" and "dead" need the claim: status running or publish pending, owner = token):
    "done"      the agent's result (ARGV[4], JSON) is recorded, still running and owned: publish it,
                then "published". A failed publish repeats only the publish (claim.lua, {5, ...}).
    "failed"    failed for good with error ARGV[4]; the failure result is still to publish ("published")
    "published" the recorded outcome's result message is out: done (or failed) for good, and the task
                shrinks to status, user_id, result, error, attempts and times (a failed one keeps its message)
    "retry"     back to queued with error ARGV[4]; the message is due back in ARGV[6] ms
    "release"   handed back, the run not counted (attempts - 1); due back in ARGV[6] ms. With an
                outcome recorded, only the claim is dropped: the next claim publishes it
    "force"     a poison message names this task: failed with ARGV[4], only if Redis does not know it.
                Recorded as an outcome (`forced`) claimed by ARGV[1] for ARGV[6] ms: publish its
                failure result, then "published" (or "release" at shutdown). A later copy finds that
                outcome again: takes the claim when no live one holds it (returns 4) and publishes,
                or comes back later (5).
    "dead"      RocketMQ dead-lettered a copy: failed with ARGV[4], unless finished, running under a
                live lease, or waiting for its retry (back_at in the future). Recorded as an outcome
                nobody holds, its failure result still to publish: the caller claims its copy to
                publish it (claim.lua {5}), and a copy handed back at shutdown finds it again here
                (returns 4). An outcome recorded earlier and held by no live claim: returns 4, the
                caller claims to publish it; held by a live claim: left alone (0).
                A task whose cancellation was asked (`cancel_at`: the client got 202) is recorded
                canceled instead (returns 3), its canceled result still to publish the same way
    "canceled"  the run was aborted because its cancellation was asked (cancel.lua): canceled, its
                canceled result still to publish ("published")
  A run whose cancellation was asked (`cancel_at`) and that ends as "done", "failed" or "retry" is
  recorded canceled instead (returns 3): the client was told 202, so the task ends canceled.
  Returns: 1 written; 0 not ours or left alone (nothing written); 2 already finished (nothing written);
           3 recorded canceled instead (publish the canceled result, then "published"; for "dead":
           a claim publishes it); 4 ("dead" only) an outcome is recorded and no live claim holds it:
           claim the copy to publish it (nothing written); ("force") the forced failure is pending
           and now claimed by ARGV[1]: publish it, then "published"; 5 ("force" only) the forced
           failure is pending under another copy's live claim: come back once it ends
  Every TTL set here is ARGV[2] plus the wait until run_at while a delayed task is not yet due
  (include/events.lua task_ttl), and renews the events list's with the hash's.
  Events: a `status` event for every change of status (include/events.lua): done with its result,
  failed and queued (a retry) with their error, canceled.
]]
--- @include "events"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until", "outcome", "back_at", "cancel_at", "run_at")
local status, mode, ttl = h[1], ARGV[3], task_ttl(ARGV[2], h[7], now)
-- A failed task keeps its request message until it expires: an operator may re-queue it (requeue.lua).
local function shrink(st)
  redis.call("HDEL", KEYS[1], "sent", "owner", "lease_until", "back_at", "reaped_at", "outcome", "crashes", "cancel_at", "progress", "forced", "parked")
  if st ~= "failed" then redis.call("HDEL", KEYS[1], "message") end
end
local function final(st)
  expire_task(KEYS[1], KEYS[3], ttl) -- a "published" without a change of status writes no event
  redis.call("SET", KEYS[2], st, "EX", ttl)
  if st ~= status then
    local extra
    if st == "done" then
      extra = ',"result":' .. (redis.call("HGET", KEYS[1], "result") or "null")
    elseif st == "failed" or mode == "retry" then
      local err = redis.call("HGET", KEYS[1], "error")
      if err then extra = ',"error":' .. cjson.encode(err) end
    end
    status_event(KEYS[1], KEYS[3], st, now, extra)
  end
  return 1
end
if status == "rejected" then return 0 end
local finished = status == "done" or ((status == "failed" or status == "canceled") and not h[4])
if mode == "force" or mode == "dead" then
  if finished then return 2 end
  if status then
    if mode == "force" then
      -- An earlier copy of this poison message failed it and did not get its result out (a worker
      -- stopped or died): this copy takes the claim over and publishes it.
      if not h[4] or redis.call("HEXISTS", KEYS[1], "forced") == 0 then return 0 end
      if h[2] and tonumber(h[3] or "0") > now then return 5 end
      redis.call("HSET", KEYS[1], "owner", ARGV[1], "lease_until", now + tonumber(ARGV[6]))
      return 4
    end
    if h[4] then
      if h[2] and tonumber(h[3] or "0") > now then return 0 end
      return 4
    end
    if status == "running" and tonumber(h[3] or "0") > now then return 0 end
    if status == "queued" and tonumber(h[5] or "0") > now then return 0 end
    if h[6] then
      -- Its cancellation was asked (202) and its run ended without recording it: the task ends
      -- canceled, as a claim would record it (claim.lua), not failed.
      redis.call("HDEL", KEYS[1], "owner", "back_at")
      redis.call("HSET", KEYS[1], "status", "canceled", "outcome", "canceled", "lease_until", now,
        "finished_at", now, "updated_at", now)
      final("canceled")
      return 3
    end
  else
    redis.call("HSET", KEYS[1], "user_id", ARGV[5], "attempts", 0, "created_at", now)
    if ARGV[8] and ARGV[8] ~= "" then redis.call("HSET", KEYS[1], "tenant", ARGV[8]) end
  end
  shrink("failed")
  redis.call("HSET", KEYS[1], "status", "failed", "error", ARGV[4], "finished_at", now, "updated_at", now)
  -- A dead letter's failure result is published under a claim of its copy, as an exhausted claim's
  -- is: a worker stopped before it is out hands the copy back, and the next one publishes it. A
  -- poison copy cannot be claimed (claim.lua needs a valid request), so "force" claims it here.
  if mode == "dead" then redis.call("HSET", KEYS[1], "outcome", "failed", "lease_until", now) end
  if mode == "force" then
    redis.call("HSET", KEYS[1], "outcome", "failed", "forced", 1, "owner", ARGV[1], "lease_until", now + tonumber(ARGV[6]))
  end
  return final("failed")
end
if finished then return 2 end
if h[2] ~= ARGV[1] then return 0 end
if mode == "published" then
  if not h[4] then return 0 end
  local st = h[4]
  shrink(st)
  if st == "done" then
    redis.call("HSET", KEYS[1], "status", "done", "finished_at", now, "updated_at", now)
  end
  -- An earlier attempt's error is not the story of a task that ended done or canceled.
  if st ~= "failed" then redis.call("HDEL", KEYS[1], "error") end
  return final(st)
end
if mode == "release" and h[4] then
  redis.call("HDEL", KEYS[1], "owner")
  redis.call("HSET", KEYS[1], "lease_until", now)
  return 1
end
if status ~= "running" or h[4] then return 0 end
if ARGV[7] and ARGV[7] ~= "" then
  local u, old = cjson.decode(ARGV[7]), redis.call("HGET", KEYS[1], "usage")
  if old then
    local o = cjson.decode(old)
    for _, f in ipairs({"prompt_tokens", "completion_tokens", "llm_ms", "calls", "attempts"}) do u[f] = (u[f] or 0) + (o[f] or 0) end
  end
  redis.call("HSET", KEYS[1], "usage", cjson.encode(u))
end
if mode == "canceled" or (h[6] and (mode == "done" or mode == "failed" or mode == "retry")) then
  redis.call("HSET", KEYS[1], "status", "canceled", "outcome", "canceled", "finished_at", now, "updated_at", now)
  redis.call("HDEL", KEYS[1], "back_at")
  final("canceled")
  return mode == "canceled" and 1 or 3
end
if mode == "done" then
  redis.call("HSET", KEYS[1], "outcome", "done", "result", ARGV[4], "updated_at", now)
  return 1
elseif mode == "failed" then
  redis.call("HSET", KEYS[1], "status", "failed", "outcome", "failed", "error", ARGV[4], "finished_at", now, "updated_at", now)
  return final("failed")
elseif mode == "retry" or mode == "release" then
  redis.call("HDEL", KEYS[1], "owner", "lease_until")
  redis.call("HSET", KEYS[1], "status", "queued", "back_at", now + tonumber(ARGV[6]), "updated_at", now)
  if mode == "retry" then
    redis.call("HSET", KEYS[1], "error", ARGV[4])
  else
    redis.call("HINCRBY", KEYS[1], "attempts", -1)
  end
  return final("queued")
end
return redis.error_reply("finish.lua: unknown mode " .. tostring(mode))
