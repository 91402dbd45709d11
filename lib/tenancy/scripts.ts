// The tenancy Lua scripts (lib/tenancy/lua/*.lua), run like lib/scripts.ts runs the task scripts:
// EVALSHA, and EVAL on NOSCRIPT (after a Redis restart or SCRIPT FLUSH). Their own folder and
// loader keep tenancy out of the task-state files other work changes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Redis } from "../scripts.ts";

export type TenancyScript = "tenant-bucket" | "tenant-admit" | "tenant-release" | "tenant-expire" | "llm-reserve";

const cache = new Map<TenancyScript, { source: string; sha: string }>();

export async function runTenancyScript(redis: Redis, name: TenancyScript, keys: string[], args: (string | number)[]): Promise<unknown> {
  let s = cache.get(name);
  if (!s) {
    const source = readFileSync(join(import.meta.dir, "lua", `${name}.lua`), "utf8");
    s = { source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") };
    cache.set(name, s);
  }
  const tail = [String(keys.length), ...keys, ...args.map(String)];
  try {
    return await redis.sendCommand(["EVALSHA", s.sha, ...tail]);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("NOSCRIPT")) return await redis.sendCommand(["EVAL", s.source, ...tail]);
    throw e;
  }
}
