--[[ RocketMQ accepted the request message: take it out of the outbox.
  KEYS[1] outbox zset   KEYS[2] outbox bodies hash
  ARGV[1] task id
  Returns: 1 removed, 0 was not in the outbox
]]
redis.call("HDEL", KEYS[2], ARGV[1])
return redis.call("ZREM", KEYS[1], ARGV[1])
