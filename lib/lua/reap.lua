--[[ Stalled tasks: running or retrying, yet not claimed or heard of since their lease or retry delay
  ended plus the stalled-after time. Their worker died and RocketMQ no longer holds their message
  (or holds it behind a long backlog). Each is returned with its request message to re-publish, and
  its next check is moved on, so concurrent reapers do not send it twice within one period; a
  duplicate is harmless anyway (claim.lua absorbs it). Entries of finished tasks are dropped.
  KEYS[1] stalled zset
  ARGV[1] now (ms)   ARGV[2] stalled after (ms)   ARGV[3] at most this many   ARGV[4] task key prefix
  Returns: {id1, body1, id2, body2, ...}
]]
local now = tonumber(ARGV[1])
local after = tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))) do
  local t = redis.call("HMGET", ARGV[4] .. id, "status", "lease_until", "message")
  if t[1] == false or t[1] == "done" or t[1] == "failed" or not t[3] or t[3] == "" then
    redis.call("ZREM", KEYS[1], id)
  elseif t[1] == "running" and tonumber(t[2] or "0") > now then
    redis.call("ZADD", KEYS[1], tonumber(t[2]) + after, id)
  else
    redis.call("ZADD", KEYS[1], now + after, id)
    out[#out + 1] = id
    out[#out + 1] = t[3]
  end
end
return out
