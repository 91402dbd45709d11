-- Task events, included by the transition scripts (`--- @include "events"`, lib/scripts.ts): one
-- capped stream per task, `{P task:<id>:status}:events` (the task's hash tag: same slot as the task,
-- so the event is written atomically with the change it reports), expiring with the task hash. Every
-- entry's task id is also published on the channel `P events`, so an API process waiting on the task
-- (lib/tasks/notices.ts) learns of it without polling. The channel is derived from the stream's key
-- (`P` is what precedes the key's last `task:`), so no script needs another argument.
-- A new status reports itself with one line: status_event(KEYS[1], KEYS[3], "canceled", now).
local EVENTS_MAXLEN = 1000

local function task_event(task_key, events_key, kind, data)
  local id = redis.call("XADD", events_key, "MAXLEN", "~", EVENTS_MAXLEN, "*", "type", kind, "data", data)
  local ttl = redis.call("PTTL", task_key)
  if ttl > 0 then redis.call("PEXPIRE", events_key, ttl) end
  local prefix, task = string.match(events_key, "^{(.*)task:(.*):status}:events$")
  if prefix then redis.call("PUBLISH", prefix .. "events", task) end
  return id
end

-- A `status` event: {"status": status, "at": ms (Redis clock) ..extra}; `extra` is JSON members
-- text starting with a comma (',"error":' .. cjson.encode(err)). Call it after the task hash's EXPIRE.
local function status_event(task_key, events_key, status, now, extra)
  return task_event(task_key, events_key, "status",
    '{"status":' .. cjson.encode(status) .. ',"at":' .. string.format("%d", now) .. (extra or "") .. '}')
end
