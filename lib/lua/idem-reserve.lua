--[[ Reserve an Idempotency-Key for a new task, before the task is created or its message sent
  (POST /tasks with the header; lib/tasks/idempotency.ts). One key per call: its own slot.
  KEYS[1] the key's record (hash: fp, task_id, state "pending" | "accepted", at = reserved at, ms)
  ARGV[1] fingerprint of the request body   ARGV[2] the new task's id   ARGV[3] ttl (s)
  ARGV[4] "" to reserve only if the key is free; else a task id: take the key over from that task
          (its request never got the task accepted: a tombstone, or a reservation whose request died)
  Returns: {1}                          reserved for ARGV[2]: create and send the task
           {2}                          the key holds another body's fingerprint: conflict
           {3, task_id, state, age_ms}  the key holds this body's task (or the take-over lost a race)
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call("HMGET", KEYS[1], "fp", "task_id", "state", "at")
if not h[1] then
  redis.call("HSET", KEYS[1], "fp", ARGV[1], "task_id", ARGV[2], "state", "pending", "at", now)
  redis.call("EXPIRE", KEYS[1], ARGV[3])
  return {1}
end
if h[1] ~= ARGV[1] then return {2} end
if ARGV[4] ~= "" and h[2] == ARGV[4] then
  redis.call("HSET", KEYS[1], "task_id", ARGV[2], "state", "pending", "at", now)
  redis.call("EXPIRE", KEYS[1], ARGV[3])
  return {1}
end
return {3, h[2], h[3], now - tonumber(h[4] or now)}
