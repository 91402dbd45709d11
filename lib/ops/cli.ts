// What the operator CLIs (scripts/tasks.ts, scripts/keys.ts) share: their exit codes, connecting to
// Redis with one line instead of a stack trace when it fails, a bounded close, and printing text that
// came from clients without letting it drive the terminal.
import type { Config } from "../config.ts";
import { silentLogger } from "../log.ts";
import { connectRedis, createRedis, type Redis } from "../redis.ts";

/** 0 ok, 1 not found or nothing to do, 2 usage (checked before connecting), 3 Redis or RocketMQ unreachable or failing. */
export const EXIT = { ok: 0, nothing: 1, usage: 2, unreachable: 3 } as const;

/** A server could not be reached: its message is the whole report. */
export class Unreachable extends Error {}

/** A Redis client for a CLI: silent, since an unreachable server is reported once (connect()), not as the client's reconnect errors. */
export const cliRedis = (cfg: Config): Redis => createRedis(cfg, silentLogger);

/** Connects within REDIS_TIMEOUT_MS (at least 2 s: an operator waits for an answer, not 5 s per try), else throws Unreachable. */
export async function connect(redis: Redis, cfg: Config): Promise<void> {
  if (!(await connectRedis(redis, Math.max(2_000, cfg.REDIS_TIMEOUT_MS))))
    throw new Unreachable("Redis is not reachable (REDIS_URL / REDIS_HOST / REDIS_PORT)");
}

/** The one line reporting an error thrown after the arguments were checked (`servers`: whom it came from). */
export function failureLine(e: unknown, servers = "Redis"): string {
  // A server's error text is not ours either: visible().
  return visible(e instanceof Unreachable ? e.message : `${servers} failed: ${e instanceof Error ? e.message : String(e)}`);
}

/** Closes the clients, waiting at most `ms`: one still reconnecting to a server that is gone must not keep the exit code waiting. */
export async function closeWithin(closes: (Promise<unknown> | undefined)[], ms = 1_000): Promise<void> {
  await Promise.race([Promise.all(closes.map((c) => c?.catch(() => {}))), Bun.sleep(ms)]);
}

/**
 * A value in the human-readable output, its control characters (C0, DEL, C1; and the Unicode line
 * separators and bidi controls, which reorder or break lines) shown as \u001b-style escapes: user ids,
 * errors and dead-letter reasons are chosen by clients, and an ESC or OSC sequence printed raw would
 * drive the operator's terminal (retitle it, hide lines, fake a link). --json is escaped by JSON.
 */
export const visible = (v: unknown) =>
  String(v).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
