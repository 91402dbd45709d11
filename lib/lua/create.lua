--[[ Record a new task as queued and put its request message in the outbox, atomically. The message
  body is kept in the task too (field `message`) until the task finishes, so a stalled task can be
  re-published (reap.lua).
  KEYS[1] task hash   KEYS[2] legacy status   KEYS[3] outbox zset   KEYS[4] outbox bodies hash
  ARGV[1] task id   ARGV[2] user_id   ARGV[3] now (ms)   ARGV[4] ttl (s)   ARGV[5] request message body
  Returns: 1 created, 0 a task with this id exists (nothing written)
]]
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "status", "queued", "user_id", ARGV[2], "attempts", 0,
  "created_at", ARGV[3], "updated_at", ARGV[3], "message", ARGV[5])
redis.call("EXPIRE", KEYS[1], ARGV[4])
redis.call("SET", KEYS[2], "queued", "EX", ARGV[4])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], ARGV[1], ARGV[5])
return 1
