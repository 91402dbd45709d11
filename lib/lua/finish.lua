--[[ Record the end of a claimed run, or what happens to a task without a claim. Times are Redis's.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] claim token ("" for "force" and "dead")   ARGV[2] ttl (s)   ARGV[3] mode   ARGV[4] data
  ARGV[5] user_id ("force", "dead": for a task Redis does not know)   ARGV[6] delay (ms): retry, release
  Modes (all but "force" and "dead" need the claim: status running or publish pending, owner = token):
    "done"      the agent's result (ARGV[4], JSON) is recorded, still running and owned: publish it,
                then "published". A failed publish repeats only the publish (claim.lua, {5, ...}).
    "failed"    failed for good with error ARGV[4]; the failure result is still to publish ("published")
    "published" the recorded outcome's result message is out: done (or failed) for good, and the task
                shrinks to status, user_id, result, error, attempts and times
    "retry"     back to queued with error ARGV[4]; the message is due back in ARGV[6] ms
    "release"   handed back, the run not counted (attempts - 1); due back in ARGV[6] ms. With an
                outcome recorded, only the claim is dropped: the next claim publishes it
    "force"     a poison message names this task: failed with ARGV[4], only if Redis does not know it
    "dead"      RocketMQ dead-lettered a copy: failed with ARGV[4], unless finished, running under a
                live lease, waiting for its retry (back_at in the future), or an outcome is recorded
  Returns: 1 written; 0 not ours or left alone (nothing written); 2 already finished (nothing written)
  Events: a `status` event for every change of status (include/events.lua): done with its result,
  failed and queued (a retry) with their error.
]]
--- @include "events"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until", "outcome", "back_at")
local status, mode, ttl = h[1], ARGV[3], ARGV[2]
local function shrink()
  redis.call("HDEL", KEYS[1], "message", "sent", "owner", "lease_until", "back_at", "reaped_at", "outcome", "crashes", "progress")
end
local function final(st)
  redis.call("EXPIRE", KEYS[1], ttl)
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
if mode == "force" or mode == "dead" then
  if status == "done" or (status == "failed" and not h[4]) then return 2 end
  if status then
    if mode == "force" or h[4] then return 0 end
    if status == "running" and tonumber(h[3] or "0") > now then return 0 end
    if status == "queued" and tonumber(h[5] or "0") > now then return 0 end
  else
    redis.call("HSET", KEYS[1], "user_id", ARGV[5], "attempts", 0, "created_at", now)
  end
  shrink()
  redis.call("HSET", KEYS[1], "status", "failed", "error", ARGV[4], "finished_at", now, "updated_at", now)
  return final("failed")
end
if status == "done" or (status == "failed" and not h[4]) then return 2 end
if h[2] ~= ARGV[1] then return 0 end
if mode == "published" then
  if not h[4] then return 0 end
  local st = h[4]
  shrink()
  if st == "done" then
    redis.call("HSET", KEYS[1], "status", "done", "finished_at", now, "updated_at", now)
    redis.call("HDEL", KEYS[1], "error")
  end
  return final(st)
end
if mode == "release" and h[4] then
  redis.call("HDEL", KEYS[1], "owner")
  redis.call("HSET", KEYS[1], "lease_until", now)
  return 1
end
if status ~= "running" or h[4] then return 0 end
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
