--[[ End a claimed run: done, failed for good, or back to queued (a retry, or handed back at shutdown).
  KEYS[1] task hash   KEYS[2] legacy status   KEYS[3] stalled zset
  ARGV[1] claim token ("" with mode "force")   ARGV[2] now (ms)   ARGV[3] ttl (s)
  ARGV[4] mode: "done" | "failed" | "retry" | "release"
               | "force" (failed without a claim, for poison)
               | "dead" (failed without a claim unless a runner holds a live lease: RocketMQ dead-lettered a copy)
  ARGV[5] result JSON (done) or error text (failed, retry, force)   ARGV[6] user_id (force only)
  ARGV[7] task id   ARGV[8] retry/release: when the message should be back (ms); the task counts as
          stalled (reap.lua) if nothing claimed it by then plus ARGV[9]   ARGV[9] stalled after (ms)
  Returns: 1 written; 0 the claim is not ours (nothing written); 2 already finished (nothing written)
]]
local t = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until")
local mode = ARGV[4]
local now = ARGV[2]
if t[1] == "done" or t[1] == "failed" then return 2 end
if mode == "dead" then
  if t[1] == "running" and tonumber(t[3] or "0") > tonumber(now) then return 0 end
  mode = "force"
end
if mode ~= "force" and (t[1] ~= "running" or t[2] ~= ARGV[1]) then return 0 end
redis.call("HDEL", KEYS[1], "owner", "lease_until")
if mode == "retry" or mode == "release" then
  redis.call("ZADD", KEYS[3], tonumber(ARGV[8]) + tonumber(ARGV[9]), ARGV[7])
else -- finished: nothing to watch, and the request body is no longer needed
  redis.call("ZREM", KEYS[3], ARGV[7])
  redis.call("HDEL", KEYS[1], "message")
end
if mode == "done" then
  redis.call("HSET", KEYS[1], "status", "done", "result", ARGV[5], "finished_at", now, "updated_at", now)
  redis.call("HDEL", KEYS[1], "error")
elseif mode == "failed" or mode == "force" then
  redis.call("HSET", KEYS[1], "status", "failed", "error", ARGV[5], "finished_at", now, "updated_at", now)
  if not t[1] then redis.call("HSET", KEYS[1], "user_id", ARGV[6], "attempts", 0, "created_at", now) end
elseif mode == "retry" then
  redis.call("HSET", KEYS[1], "status", "queued", "error", ARGV[5], "updated_at", now)
else -- release: the run did not happen as far as attempts go
  redis.call("HSET", KEYS[1], "status", "queued", "updated_at", now)
  redis.call("HINCRBY", KEYS[1], "attempts", -1)
end
local status = redis.call("HGET", KEYS[1], "status")
redis.call("EXPIRE", KEYS[1], ARGV[3])
redis.call("SET", KEYS[2], status, "EX", ARGV[3])
return 1
