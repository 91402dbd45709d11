--[[ Extend the lease of a running claim (and the time before the task counts as stalled).
  KEYS[1] task hash   KEYS[2] stalled zset
  ARGV[1] claim token   ARGV[2] now (ms)   ARGV[3] lease (ms)   ARGV[4] task id   ARGV[5] stalled after (ms)
  Returns: 1 extended, 0 the claim is no longer ours (stop the run)
]]
local t = redis.call("HMGET", KEYS[1], "status", "owner")
if t[1] ~= "running" or t[2] ~= ARGV[1] then return 0 end
local lease_until = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call("HSET", KEYS[1], "lease_until", lease_until)
redis.call("ZADD", KEYS[2], lease_until + tonumber(ARGV[5]), ARGV[4])
return 1
