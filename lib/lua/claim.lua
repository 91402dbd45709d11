--[[ A worker claims a task to run it: queued -> running, or running -> running when the previous
  runner's lease has expired (it died). A task this system never recorded (sent by another producer,
  or expired) is adopted as queued first, with the message that brought it.
  KEYS[1] task hash   KEYS[2] legacy status   KEYS[3] stalled zset
  ARGV[1] claim token   ARGV[2] now (ms)   ARGV[3] lease (ms)   ARGV[4] ttl (s)   ARGV[5] user_id
  ARGV[6] task id   ARGV[7] stalled after (ms)
  ARGV[8] request message body, kept when adopting   ARGV[9] "probe": the body was left out (the usual
  case needs none), so for an unknown task return 4 instead of adopting it; "adopt": adopt it
  Returns: {1, attempt}         claimed; attempt counts runs, this one included
           {2, status}          already finished (done or failed): ack and skip
           {3, lease_left_ms}   another runner holds a live lease: come back later
           {4, 0}               unknown task and no body given: call again with the body to adopt it
]]
local now = tonumber(ARGV[2])
local t = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until")
local status = t[1]
if not status then
  if ARGV[9] == "probe" then return {4, 0} end
  redis.call("HSET", KEYS[1], "status", "queued", "user_id", ARGV[5], "attempts", 0, "created_at", now)
  if ARGV[8] ~= "" then redis.call("HSET", KEYS[1], "message", ARGV[8]) end
  status = "queued"
end
if status == "done" or status == "failed" then return {2, status} end
if status == "running" and t[2] and t[2] ~= ARGV[1] then
  local left = tonumber(t[3] or "0") - now
  if left > 0 then return {3, left} end
end
local attempt = redis.call("HINCRBY", KEYS[1], "attempts", 1)
local lease_until = now + tonumber(ARGV[3])
redis.call("HSET", KEYS[1], "status", "running", "owner", ARGV[1], "lease_until", lease_until,
  "updated_at", now, "started_at", now)
redis.call("EXPIRE", KEYS[1], ARGV[4])
redis.call("SET", KEYS[2], "running", "EX", ARGV[4])
redis.call("ZADD", KEYS[3], lease_until + tonumber(ARGV[7]), ARGV[6])
return {1, attempt}
