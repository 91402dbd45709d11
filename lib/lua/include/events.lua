-- Task events, included by the transition scripts (`--- @include "events"`, lib/scripts.ts): one
-- capped list per task, `{P task:<id>:status}:events` (the task's hash tag: same slot as the task, so
-- the event is written atomically with the change it reports), expiring with the task hash. Each
-- entry is `<n> <type> <data JSON>`, n counting up from 1 per task: the SSE id, resumable with
-- lib/lua/events-read.lua. (A list, not a Redis stream: Redis 7 preallocates 4 KiB for a stream's
-- first node, 4.7 KB per task by MEMORY USAGE against ~0.6 KB for a list of the usual 7 events.)
-- Every entry's task id is also published on the channel `P events`, so an API process waiting on the
-- task (lib/tasks/notices.ts) learns of it without polling. The channel is derived from the list's
-- key (`P` is what precedes the key's last `task:`), so no script needs another argument.
-- A new status reports itself with one line: status_event(KEYS[1], KEYS[3], "canceled", now).
local EVENTS_MAX = 1000

local function task_event(task_key, events_key, kind, data)
  local last = redis.call("LINDEX", events_key, -1)
  local n = last and (tonumber(string.match(last, "^(%d+)")) or 0) + 1 or 1
  redis.call("RPUSH", events_key, string.format("%d", n) .. " " .. kind .. " " .. data)
  if n > EVENTS_MAX then redis.call("LTRIM", events_key, -EVENTS_MAX, -1) end
  local ttl = redis.call("PTTL", task_key)
  if ttl > 0 then redis.call("PEXPIRE", events_key, ttl) end
  local prefix, task = string.match(events_key, "^{(.*)task:(.*):status}:events$")
  if prefix then redis.call("PUBLISH", prefix .. "events", task) end
  return n
end

-- A `status` event: {"status": status, "at": ms (Redis clock) ..extra}; `extra` is JSON members
-- text starting with a comma (',"error":' .. cjson.encode(err)). Call it after the task hash's EXPIRE.
local function status_event(task_key, events_key, status, now, extra)
  return task_event(task_key, events_key, "status",
    '{"status":' .. cjson.encode(status) .. ',"at":' .. string.format("%d", now) .. (extra or "") .. '}')
end

-- The TTL (s) a transition gives the task's keys: `ttl`, plus the wait until its run_at while a
-- delayed task is not yet due (`run_at`: ms or nil), as create.lua gives it. Its timer message comes
-- at run_at whatever happened meanwhile (canceled, told 503), and must find the record then: a claim
-- that finds none adopts the message (claim.lua) and runs it.
local function task_ttl(ttl, run_at, now)
  local at = tonumber(run_at or "")
  ttl = tonumber(ttl)
  if at and at > now then ttl = ttl + math.ceil((at - now) / 1000) end
  return ttl
end

-- Renews the TTL of a task's hash and of its events list together: a list that expired first would
-- restart its numbering at 1 (task_event), and SSE clients resuming with Last-Event-ID would miss
-- events. (A new event copies the hash's TTL to the list itself; this is for renewals without one.)
local function expire_task(task_key, events_key, ttl)
  redis.call("EXPIRE", task_key, ttl)
  if events_key then redis.call("EXPIRE", events_key, ttl) end
end
