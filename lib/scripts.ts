// Lua scripts live in lib/lua/*.lua, one per atomic state change, each with a header listing
// KEYS, ARGV and return codes. They run with EVALSHA and fall back to EVAL on NOSCRIPT (after a
// Redis restart or SCRIPT FLUSH), as BullMQ does. Every key a script touches is in KEYS, and all
// KEYS of one call share a hash tag (lib/keys.ts): on Redis Cluster the call goes to the node that
// owns the first key's slot.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ClientClosedError, ClientOfflineError, RootNodesUnavailableError, type RedisClientType, type RedisClusterType } from "redis";
import { timeRedis } from "./observe/metrics.ts";

export type SingleRedis = RedisClientType<any, any, any, any, any>;
export type ClusterRedis = RedisClusterType<any, any, any, any, any>;
/** A single-node client or a Redis Cluster client (lib/redis.ts builds either from config). */
export type Redis = SingleRedis | ClusterRedis;

export type ScriptName =
  | "create" | "sent" | "abandon" | "claim" | "heartbeat" | "finish" | "reap" | "outbox-check"
  | "hint" | "due" | "requeue" | "cancel" | "idem-reserve" | "idem-settle" | "user-index" | "progress" | "events-read"
  | "keep";

export function isCluster(redis: Redis): redis is ClusterRedis {
  return "masters" in redis;
}

/** The client refused the command before sending it (not connected: no offline queue): it never ran. */
export function neverSent(e: unknown): boolean {
  return e instanceof ClientOfflineError || e instanceof ClientClosedError || e instanceof RootNodesUnavailableError;
}

/** A Redis command got no answer within REDIS_TIMEOUT_MS (Redis hangs, or the network does). */
export class RedisTimeoutError extends Error {
  override name = "RedisTimeoutError";
}

// node-redis 6.3.1's own command timeout (commandOptions.timeout) never fires for a command already
// written to a socket whose peer stopped answering (seen under Bun and Node with a SIGSTOPped
// redis-server): every command goes through send(), which stops waiting itself. The late reply is
// still read by the client and paired with its command, so the connection stays usable.
const timeouts = new WeakMap<object, number>();
/** Every command sent through send() on this client rejects after `ms` without an answer. */
export function setCommandTimeout(redis: Redis, ms: number | undefined) {
  if (ms) timeouts.set(redis, ms);
}
export const commandTimeout = (redis: Redis) => timeouts.get(redis);

/** Sends one raw command; on a cluster it is routed by `key` (the command's first key). Timed (metrics). */
export function send<T = unknown>(redis: Redis, key: string | undefined, args: string[]): Promise<T> {
  return timeRedis(args[0]!, sendUntimed<T>(redis, key, args));
}

function sendUntimed<T>(redis: Redis, key: string | undefined, args: string[]): Promise<T> {
  const p = (isCluster(redis) ? redis.sendCommand(key, false, args) : redis.sendCommand(args)) as Promise<T>;
  const ms = timeouts.get(redis);
  if (!ms) return p;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeoutError(`Redis did not answer ${args[0]} within ${ms} ms`)), ms);
  });
  p.catch(() => {}); // answered after the timeout: nobody listens any more
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

interface Script {
  name: ScriptName;
  source: string;
  sha: string;
}

/**
 * A line `--- @include "name"` is replaced by lib/lua/include/name.lua: helpers several scripts share
 * (as BullMQ's includes), such as the task events every transition writes (include/events.lua).
 */
function withIncludes(source: string): string {
  return source.replace(/^--- @include "([\w-]+)"$/gm, (_, name: string) => readFileSync(join(import.meta.dir, "lua", "include", `${name}.lua`), "utf8"));
}

const cache = new Map<ScriptName, Script>();
function load(name: ScriptName): Script {
  let s = cache.get(name);
  if (!s) {
    const source = withIncludes(readFileSync(join(import.meta.dir, "lua", `${name}.lua`), "utf8"));
    const sha = new Bun.CryptoHasher("sha1").update(source).digest("hex");
    s = { name, source, sha };
    cache.set(name, s);
  }
  return s;
}

/** Every script call passes here: tests use it to check that all KEYS of each call share one slot. */
export const scriptCalls: { observe?: (name: ScriptName, keys: string[]) => void } = {};

/** Runs a script (timed as `script:<name>`, EVALSHA and a fallback EVAL together). */
export function runScript(redis: Redis, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  return timeRedis(`script:${name}`, runScriptUntimed(redis, name, keys, args));
}

async function runScriptUntimed(redis: Redis, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  const s = load(name);
  scriptCalls.observe?.(name, keys);
  const tail = [String(keys.length), ...keys, ...args.map(String)];
  try {
    return await sendUntimed(redis, keys[0], ["EVALSHA", s.sha, ...tail]);
  } catch (e) {
    // The reply's error code, not its prose: Redis starts this reply with the word NOSCRIPT.
    if (e instanceof Error && e.message.startsWith("NOSCRIPT")) return await sendUntimed(redis, keys[0], ["EVAL", s.source, ...tail]);
    throw e;
  }
}

/** Redis Cluster's key slot (CRC16/XMODEM of the hash tag, or of the whole key, mod 16384). */
export function keySlot(key: string): number {
  let k = key;
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) k = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(k, "utf8")) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
