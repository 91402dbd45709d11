--[[ Extend the lease of a claim, and the TTL of the task's keys (a run may outlast it): a running
  claim's, or one that publishes a recorded outcome (its publish retried while the result topic
  refuses writes).
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot; its TTL too)
  ARGV[1] claim token   ARGV[2] lease (ms)   ARGV[3] ttl (s)
  Returns: 1 extended, 0 the claim is no longer ours (stop the run), 2 extended, but its cancellation
  was asked (cancel.lua): abort the run and record it canceled (the fallback when the pub/sub notice
  was lost)
]]
--- @include "events"
local h = redis.call("HMGET", KEYS[1], "status", "owner", "cancel_at", "outcome")
if h[2] ~= ARGV[1] or (h[1] ~= "running" and not h[4]) then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "lease_until", now + tonumber(ARGV[2]))
expire_task(KEYS[1], KEYS[3], ARGV[3])
redis.call("EXPIRE", KEYS[2], ARGV[3])
if h[3] then return 2 end
return 1
