--[[ One user's listing index (GET /tasks, lib/state/user-index.ts): a hint that a task exists,
  written after its create (another slot), scored with its created_at, so pages come in the order
  of the tasks' own times. Readers check each entry against the task and drop the ones whose task is
  gone (expired, or a tombstone), so a stale entry is harmless.
  KEYS[1] the user's index zset (lib/keys.ts userTasks)
  ARGV[1] task id   ARGV[2] ttl (s): the index lives this long after its last entry
  ARGV[3] cap: entries kept, the oldest trimmed past it   ARGV[4] the task's created_at (ms)
  Returns: 1
]]
redis.call("ZADD", KEYS[1], ARGV[4], ARGV[1])
-- ZPOPMIN takes the lowest scores: the oldest entries (and only commands lib/state/acl.ts allows).
local over = redis.call("ZCARD", KEYS[1]) - tonumber(ARGV[3])
if over > 0 then redis.call("ZPOPMIN", KEYS[1], over) end
redis.call("EXPIRE", KEYS[1], ARGV[2])
return 1
