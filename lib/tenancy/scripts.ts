// The tenancy Lua scripts (lib/tenancy/lua/*.lua), run like lib/scripts.ts runs the task scripts:
// EVALSHA, and EVAL on NOSCRIPT (after a Redis restart or SCRIPT FLUSH), through send() (timeout,
// and on Redis Cluster routed by the first key: every script's KEYS share one hash tag, lib/keys.ts).
// Their own folder and loader keep tenancy out of the task-state files.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { scriptCalls, send, type Redis, type ScriptName } from "../scripts.ts";

export type TenancyScript = "tenant-bucket" | "tenant-admit" | "tenant-release" | "tenant-expire" | "llm-reserve";

const cache = new Map<TenancyScript, { source: string; sha: string }>();

export async function runTenancyScript(redis: Redis, name: TenancyScript, keys: string[], args: (string | number)[]): Promise<unknown> {
  let s = cache.get(name);
  if (!s) {
    const source = readFileSync(join(import.meta.dir, "lua", `${name}.lua`), "utf8");
    s = { source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") };
    cache.set(name, s);
  }
  // The same hook as the task scripts: tests check that all KEYS of each call share one slot.
  scriptCalls.observe?.(name as unknown as ScriptName, keys);
  const tail = [String(keys.length), ...keys, ...args.map(String)];
  try {
    return await send(redis, keys[0], ["EVALSHA", s.sha, ...tail]);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("NOSCRIPT")) return await send(redis, keys[0], ["EVAL", s.source, ...tail]);
    throw e;
  }
}

/** HGETALL's answer as a record (RESP2 gives a flat field, value list; RESP3 a map). */
export function hashOf(reply: unknown): Record<string, string> {
  const h: Record<string, string> = {};
  if (Array.isArray(reply)) for (let i = 0; i + 1 < reply.length; i += 2) h[String(reply[i])] = String(reply[i + 1]);
  else if (reply && typeof reply === "object") Object.assign(h, reply);
  return h;
}

/** One command on one key (routed by it on Redis Cluster), with the client's timeout. */
export const on = <T = unknown>(redis: Redis, cmd: string, key: string, ...args: (string | number)[]) =>
  send<T>(redis, key, [cmd, key, ...args.map(String)]);
