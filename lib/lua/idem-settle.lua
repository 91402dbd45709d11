--[[ The request that reserved an Idempotency-Key (idem-reserve.lua) has its answer.
  KEYS[1] the key's record
  ARGV[1] the task id it reserved the key for
  ARGV[2] "accepted": the task was accepted (202), later requests replay it;
          "release": the request was answered 503 (the task never runs): the key is free again
  Returns: 1 done, 0 the key no longer names that task (taken over, or expired): nothing written
]]
if redis.call("HGET", KEYS[1], "task_id") ~= ARGV[1] then return 0 end
if ARGV[2] == "release" then
  redis.call("DEL", KEYS[1])
else
  redis.call("HSET", KEYS[1], "state", "accepted")
end
return 1
