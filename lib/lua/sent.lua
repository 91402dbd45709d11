--[[ RocketMQ accepted the task's request message: the outbox need not send it again.
  KEYS[1] task hash
  Returns: 1 marked, 0 no such task (or a tombstone: left alone)
]]
local status = redis.call("HGET", KEYS[1], "status")
if not status or status == "rejected" then return 0 end
redis.call("HSET", KEYS[1], "sent", 1)
return 1
