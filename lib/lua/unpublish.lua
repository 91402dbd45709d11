--[[ RocketMQ refused the request message: remove the task so nothing looks queued that was never sent.
  Only a task nobody has touched (still queued, no attempt) is removed.
  KEYS[1] task hash   KEYS[2] legacy status   KEYS[3] outbox zset   KEYS[4] outbox bodies hash
  ARGV[1] task id
  Returns: 1 removed, 0 left alone (a worker already saw it)
]]
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("HDEL", KEYS[4], ARGV[1])
local st = redis.call("HMGET", KEYS[1], "status", "attempts")
if st[1] == "queued" and tonumber(st[2] or "0") == 0 then
  redis.call("DEL", KEYS[1], KEYS[2])
  return 1
end
return 0
