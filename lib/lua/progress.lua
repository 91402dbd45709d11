--[[ The agent of a running task reports progress (lib/worker/progress.ts, throttled): kept as the
  task's latest `progress` (shown by GET) and appended as a `progress` event with Redis's time added
  (`at`), only while the claim is the caller's and no outcome is recorded yet (a late report after the
  result must not follow it).
  KEYS[1] task hash   KEYS[2] legacy status (same slot; not touched)   KEYS[3] events list (same slot)
  ARGV[1] claim token   ARGV[2] progress, a JSON object ({"pct"?, "message"?, "partial"?})
  Returns: 1 written, 0 not the caller's running claim (nothing written)
]]
--- @include "events"
local h = redis.call("HMGET", KEYS[1], "status", "owner", "outcome")
if h[1] ~= "running" or h[2] ~= ARGV[1] or h[3] then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "progress", ARGV[2])
local rest = string.sub(ARGV[2], 2)
if rest ~= "}" then rest = "," .. rest end
task_event(KEYS[1], KEYS[3], "progress", '{"at":' .. string.format("%d", now) .. rest)
return 1
