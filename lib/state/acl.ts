// The Redis ACL user this system needs, and no more: its key prefix and the commands it sends
// (directly or inside its Lua scripts, which Redis checks command by command). The README's
// `ACL SETUSER` line is this rule for REDIS_PREFIX=agent:, and tests/redis-acl.test.ts runs the
// API, a worker and the keys CLI as such a user. A command added to the code must be added here:
// that test then shows it as an ACL denial.
export const REDIS_COMMANDS = [
  // connection (lib/redis.ts turns off node-redis's CLIENT SETINFO: no such command before Redis 7.2);
  // cluster|slots: the topology the cluster client (REDIS_CLUSTER_NODES) asks every seed node for
  "auth", "hello", "ping", "quit", "cluster|slots",
  // scripts (every state change, EVALSHA then EVAL on NOSCRIPT) and the commands inside them
  "evalsha", "eval", "time",
  "exists", "expire", "pexpire", "del", "get", "set",
  "hset", "hget", "hmget", "hgetall", "hdel", "hincrby",
  "zadd", "zrem", "zcard", "zscore", "zrange", "zrangebyscore", "zpopmin", "unlink",
  "sadd", "smembers", "scard",
  "lpush", "ltrim", "lrange",
  // cancellation notices: the API publishes, workers subscribe (lib/worker/cancel-watch.ts); task
  // events (lib/lua/include/events.lua, lib/tasks/): the capped list per task, its TTL copied from the
  // task's, the notice on the `P events` channel, and the API's one subscriber
  "publish", "subscribe", "unsubscribe", "rpush", "lindex", "pttl",
  // Not here: SCAN (keyless: it would list every key name of the server), TYPE, MEMORY. Only
  // the one-shot scripts/migrate-keys.ts and scripts/redis-memory.ts send them, and `scripts/tasks.ts
  // stats` (SCAN, LLEN): run those as an admin.
] as const;

/**
 * Arguments of `ACL SETUSER` for a user limited to `prefix`: `~prefix*` and `~{prefix*` (a key may
 * start with its Redis Cluster hash tag), two pub/sub channels (`prefix` + "cancel", the cancel notices;
 * `prefix` + "events", the task events), only REDIS_COMMANDS.
 * The password is given as its SHA-256 (`#<hex>`), so the line holds no secret.
 */
export function aclSetUserArgs(user: string, passwordSha256Hex: string, prefix: string): string[] {
  if (!prefix) throw new Error("a Redis ACL user needs a key prefix (REDIS_PREFIX) to be limited to");
  const glob = prefix.replace(/[*?[\]\\]/g, "\\$&");
  return [
    user, "reset", "on", `#${passwordSha256Hex}`,
    `~${glob}*`, `~{${glob}*`, "resetchannels", `&${glob}cancel`, `&${glob}events`, "-@all",
    ...REDIS_COMMANDS.map((c) => `+${c}`),
  ];
}
