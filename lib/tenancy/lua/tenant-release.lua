--[[ A run of a tenant's task ended (or a slot was found stale): free its slot, and hand the free
  slots to the oldest parked tasks, each reserved for it until its re-published message arrives.
  KEYS[1] tenant limits hash (concurrency)   KEYS[2] running zset   KEYS[3] parked zset
  ARGV[1] task id whose slot to free ("" none: only fill free slots)   ARGV[2] reserve (ms from now)
  ARGV[3] most tasks to release at once
  Returns: the task ids released from parking (the caller re-publishes their request messages).
  Without a concurrency limit (it was removed) parked tasks are released without a slot.
]]
if ARGV[1] ~= "" then redis.call("ZREM", KEYS[2], ARGV[1]) end
local limit = tonumber(redis.call("HGET", KEYS[1], "concurrency") or "")
local free = tonumber(ARGV[3])
if limit and limit > 0 then free = math.min(free, limit - redis.call("ZCARD", KEYS[2])) end
if free <= 0 then return {} end
local popped = redis.call("ZPOPMIN", KEYS[3], free)
local out = {}
if #popped == 0 then return out end
local t = redis.call("TIME")
local hold = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
for i = 1, #popped, 2 do
  if limit and limit > 0 then redis.call("ZADD", KEYS[2], hold, popped[i]) end
  out[#out + 1] = popped[i]
end
return out
