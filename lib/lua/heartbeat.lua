--[[ Extend the lease of a running claim.
  KEYS[1] task hash
  ARGV[1] claim token   ARGV[2] now (ms)   ARGV[3] lease (ms)
  Returns: 1 extended, 0 the claim is no longer ours (stop the run)
]]
local t = redis.call("HMGET", KEYS[1], "status", "owner")
if t[1] ~= "running" or t[2] ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[1], "lease_until", tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
