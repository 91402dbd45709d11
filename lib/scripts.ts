// Lua scripts live in lib/lua/*.lua, one per atomic state change, each with a header listing
// KEYS, ARGV and return codes. They run with EVALSHA and fall back to EVAL on NOSCRIPT (after a
// Redis restart or SCRIPT FLUSH), as BullMQ does.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { RedisClientType } from "redis";

export type Redis = RedisClientType<any, any, any, any, any>;
export type ScriptName = "create" | "published" | "unpublish" | "claim" | "heartbeat" | "finish" | "reap";

interface Script {
  name: ScriptName;
  source: string;
  sha: string;
}

const cache = new Map<ScriptName, Script>();
function load(name: ScriptName): Script {
  let s = cache.get(name);
  if (!s) {
    const source = readFileSync(join(import.meta.dir, "lua", `${name}.lua`), "utf8");
    const sha = new Bun.CryptoHasher("sha1").update(source).digest("hex");
    s = { name, source, sha };
    cache.set(name, s);
  }
  return s;
}

export async function runScript(redis: Redis, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  const s = load(name);
  const tail = [String(keys.length), ...keys, ...args.map(String)];
  try {
    return await redis.sendCommand(["EVALSHA", s.sha, ...tail]);
  } catch (e) {
    // The reply's error code, not its prose: Redis starts this reply with the word NOSCRIPT.
    if (e instanceof Error && e.message.startsWith("NOSCRIPT")) return await redis.sendCommand(["EVAL", s.source, ...tail]);
    throw e;
  }
}
