--[[ Hints due now in one bucket's zset: score <= Redis time - ARGV[2].
  KEYS[1] bucket zset
  ARGV[1] at most this many   ARGV[2] older than (ms; 0: due now)
  Returns: {id1, score1, id2, score2, ...}
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now - tonumber(ARGV[2]), "WITHSCORES", "LIMIT", 0, tonumber(ARGV[1]))
