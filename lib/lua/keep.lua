--[[ A parked task (lib/tenancy/fair-share.ts) waits with no transition to renew its keys' TTL: its
  tenant's slots may stay full for longer than TASK_TTL_SECONDS. Parking marks it (`parked`), and the
  tenancy reaper renews its keys while it still waits: queued, or scheduled (a delayed task parked
  when its time came, before a claim took it as queued); a task that ended meanwhile keeps the TTL
  its end gave it. The mark keeps reap.lua from re-sending a parked task that has a stalled hint (a
  delayed or retried one): its release re-publishes it (and drops the mark), as does a claim.
  KEYS[1] task hash   KEYS[2] legacy status (same slot)   KEYS[3] events list (same slot)
  ARGV[1] ttl (s): the least TTL the keys are left with (a longer one, a delayed task's, is kept)
  ARGV[2] "park": also mark it parked (the worker parking it); "" renew only (the reaper)
  Returns: 1 renewed (or already long enough), 0 not waiting (ended, or running), -1 no record
]]
--- @include "events"
local status = redis.call("HGET", KEYS[1], "status")
if not status then return -1 end
if status ~= "queued" and status ~= "scheduled" then return 0 end
if ARGV[2] == "park" then redis.call("HSET", KEYS[1], "parked", 1) end
local ttl = tonumber(ARGV[1])
if redis.call("PTTL", KEYS[1]) < ttl * 1000 then
  expire_task(KEYS[1], KEYS[3], ttl)
  redis.call("EXPIRE", KEYS[2], ttl)
end
return 1
