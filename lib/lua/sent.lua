--[[ RocketMQ accepted these tasks' request messages: the outbox need not send them again.
  KEYS[1..n] task hashes   KEYS[n+1..2n] (only with ARGV) their outbox hint zsets
  ARGV[1..n] (optional) the task ids, whose outbox hints are dropped too
  On one Redis node the API marks every send confirmed in one event-loop turn with one call (a send
  batch is confirmed at once); on Redis Cluster each task's keys have a slot of their own, so a call
  carries one task and no zset, and the hint is dropped by a ZREM of its own.
  Returns: how many tasks were marked (a missing task or a tombstone is left alone)
]]
local n = #KEYS
if #ARGV > 0 then n = #ARGV end
local marked = 0
for i = 1, n do
  local status = redis.call("HGET", KEYS[i], "status")
  if status and status ~= "rejected" then
    redis.call("HSET", KEYS[i], "sent", 1)
    marked = marked + 1
  end
  if #ARGV > 0 then redis.call("ZREM", KEYS[n + i], ARGV[i]) end
end
return marked
