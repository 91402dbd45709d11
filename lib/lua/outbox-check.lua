--[[ The outbox sweeper asks about one task whose outbox hint is old: is its request message still
  unsent? Only a task still queued (or scheduled), never attempted and never confirmed sent is
  re-sent; for any other (sent, running, finished, rejected, gone) the hint is dropped. A scheduled
  task's run_at comes along: the re-send keeps its delivery time (lib/submit.ts).
  KEYS[1] task hash
  Returns: {1, message, run_at} re-send `message` (run_at: ms, or "" to run at once), then mark it
                                sent (sent.lua) and drop the hint
           {0}                  drop the hint
]]
local h = redis.call("HMGET", KEYS[1], "status", "attempts", "sent", "message", "run_at")
if (h[1] == "queued" or h[1] == "scheduled") and tonumber(h[2] or "0") == 0 and h[3] ~= "1" and h[4] and h[4] ~= "" then
  return {1, h[4], h[1] == "scheduled" and h[5] or ""}
end
return {0}
