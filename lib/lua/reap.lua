--[[ The reaper asks about one task it found due in a bucket's stalled hints: is it stalled, i.e.
  running or retrying (or with a result still to publish, a canceled one's included), yet not claimed again for STALLED_AFTER_MS
  after its lease or retry delay ended? Or scheduled (a delayed task), yet not claimed STALLED_AFTER_MS
  after its run_at: its timer message never came through (a forward dead-lettered, a broker lost it)? Then its worker died and RocketMQ no longer holds its message
  (or holds it behind a long backlog): the caller re-publishes the request message returned here. A
  task is handed out at most once per STALLED_AFTER_MS (`reaped_at`), whichever reaper asks.
  KEYS[1] task hash
  ARGV[1] stalled after (ms)
  Returns: {0}                 nothing to watch (finished, rejected, gone, or queued for its first run):
                               drop the hint
           {1, at}             not stalled (yet, or parked by its tenant's limit: keep.lua): look again at `at` (ms)
           {2, at, message}    stalled: re-publish `message` now; look again at `at`
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local after = tonumber(ARGV[1])
local h = redis.call("HMGET", KEYS[1], "status", "owner", "lease_until", "back_at", "message", "reaped_at", "outcome", "updated_at", "run_at", "parked")
local status = h[1]
if not status or status == "done" or status == "rejected" or ((status == "failed" or status == "canceled") and not h[7]) then return {0} end
if not h[5] or h[5] == "" then return {0} end
-- Parked (keep.lua): its tenant's release re-publishes it, not this. Looked at again a period later.
if h[10] and (status == "queued" or status == "scheduled") then return {1, now + after} end
local due
if status == "queued" then
  if not h[4] then return {0} end
  due = tonumber(h[4]) + after
elseif status == "scheduled" then
  if not h[9] then return {0} end
  due = tonumber(h[9]) + after
else
  local lease = tonumber(h[3] or h[8] or "0")
  if h[2] and lease > now then return {1, lease + after} end
  due = lease + after
end
if now < due then return {1, due} end
local last = tonumber(h[6] or "0")
if now < last + after then return {1, last + after} end
redis.call("HSET", KEYS[1], "reaped_at", now)
return {2, now + after, h[5]}
