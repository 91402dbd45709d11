--[[ The fleet's LLM budget for one model, on Redis's clock: a call reserves its turn on two
  timelines (GCRA: the theoretical arrival time), one for requests (60000/rpm ms a request) and one
  for tokens (60000/tpm ms a token); it may start once both have reached it. Turns are handed out in
  order, so calls wait their turn instead of being refused, and the rate never passes the budget.
  KEYS[1] budget hash (rpm_tat, tpm_tat: ms)
  ARGV[1] "reserve" | "adjust"   ARGV[2] rpm (0: none)   ARGV[3] tpm (0: none)
  ARGV[4] reserve: estimated tokens of the call; adjust: tokens used minus the estimate (may be < 0)
  Returns: reserve: {wait_ms, now_ms} (start the call after wait_ms); adjust: 1
]]
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local ti = tpm > 0 and 60000 / tpm or 0
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
-- Idle for a minute past the later of the two turns: the state is the same as none. Not a minute
-- past the call's start: one call estimated above the minute's tokens, or a correction, puts the
-- token timeline further ahead, and state forgotten while ahead would let the next calls through.
local function keep()
  local b = redis.call("HMGET", KEYS[1], "rpm_tat", "tpm_tat")
  local last = math.max(now, tonumber(b[1] or "") or 0, tonumber(b[2] or "") or 0)
  redis.call("PEXPIRE", KEYS[1], math.ceil(last - now) + 60000)
end
if ARGV[1] == "adjust" then
  if tpm > 0 then
    local tat = tonumber(redis.call("HGET", KEYS[1], "tpm_tat") or "")
    if tat then
      redis.call("HSET", KEYS[1], "tpm_tat", string.format("%.3f", tat + tokens * ti))
      keep()
    end
  end
  return 1
end
local b = redis.call("HMGET", KEYS[1], "rpm_tat", "tpm_tat")
local start = now
if rpm > 0 then start = math.max(start, tonumber(b[1] or "") or 0) end
if tpm > 0 then start = math.max(start, tonumber(b[2] or "") or 0) end
if rpm > 0 then redis.call("HSET", KEYS[1], "rpm_tat", string.format("%.3f", start + 60000 / rpm)) end
if tpm > 0 then redis.call("HSET", KEYS[1], "tpm_tat", string.format("%.3f", start + tokens * ti)) end
keep()
return {math.ceil(start - now), math.floor(now)}
