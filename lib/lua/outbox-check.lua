--[[ The outbox sweeper asks about one task whose outbox hint is old: is its request message still
  unsent? Only a task still queued, never attempted and never confirmed sent is re-sent; for any
  other (sent, running, finished, rejected, gone) the hint is dropped.
  KEYS[1] task hash
  Returns: {1, message} re-send `message`, then mark it sent (sent.lua) and drop the hint
           {0}          drop the hint
]]
local h = redis.call("HMGET", KEYS[1], "status", "attempts", "sent", "message")
if h[1] == "queued" and tonumber(h[2] or "0") == 0 and h[3] ~= "1" and h[4] and h[4] ~= "" then return {1, h[4]} end
return {0}
