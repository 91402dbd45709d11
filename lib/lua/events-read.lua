--[[ A task's events after the one numbered ARGV[1] (lib/lua/include/events.lua writes them): numbers
  are consecutive within the list, so the index is the number minus the first one kept; read in one
  script so a trim between finding the first and reading cannot shift the range.
  KEYS[1] events list
  ARGV[1] after this event number (0: from the first kept)   ARGV[2] at most this many
  Returns: the entries, oldest first (`<n> <type> <data>`); none when there are no newer ones
]]
local first = redis.call("LINDEX", KEYS[1], 0)
if not first then return {} end
local start = tonumber(ARGV[1]) + 1 - tonumber(string.match(first, "^(%d+)"))
if start < 0 then start = 0 end
return redis.call("LRANGE", KEYS[1], start, start + tonumber(ARGV[2]) - 1)
