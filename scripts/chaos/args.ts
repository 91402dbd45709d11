// Command-line options of scripts/chaos.ts, validated once; a bad value exits 2 naming the option.
import { ArgsError, strictArgs } from "../load/cli.ts";

export const PARTS = ["worker", "api", "redis", "broker"] as const;
export type PartName = (typeof PARTS)[number];
export const ACTIONS = ["kill", "stop", "restart"] as const;
export type Action = (typeof ACTIONS)[number];

export interface ChaosOptions {
  durationS: number;
  seed: number;
  /** the stack folder whose Redis and broker JVM may be hit (bun scripts/stack.ts --dir) */
  dir?: string;
  workers: number;
  /** submits per second, open loop */
  rate: number;
  parts: PartName[];
  actions: Action[];
  /** seconds between two faults: uniform in [minGap, maxGap] */
  minGapS: number;
  maxGapS: number;
  /** longest SIGSTOP of Redis, the broker or the API (a worker's is capped by its lease, see run.ts) */
  maxPauseS: number;
  /** seconds to wait, after the last fault, for every accepted task to finish */
  settleS: number;
  agentDelayMs: number;
  invisibleMs: number;
  /**
   * when set, every other task is sent with the API key of a tenant whose concurrency limit is this
   * (the rest without a key): the run then checks that no more of its tasks ran at once
   */
  tenantConcurrency?: number;
  /** share of the tasks sent delayed (delay_ms 1-20 s): the report checks none ran before its run_at */
  delayed: number;
  /** share of the accepted tasks whose cancellation is asked 0-3 s after the 202: those told 202 must end canceled */
  cancel: number;
  /**
   * every POST carries an Idempotency-Key and is retried with it (503, 409 in progress, no answer)
   * for up to 90 s, as a careful client does: the report checks one key never ran two tasks
   */
  idempotent: boolean;
  json: boolean;
  /** keep the run's folder (child logs, run records) instead of removing it */
  keep: boolean;
}

export const USAGE = `usage: bun scripts/chaos.ts [options]
Runs an API and workers of its own (recording agent) against the local stack, sends load, and kills,
stops (SIGSTOP/SIGCONT) or restarts parts at random for a bounded time; then reports what happened.
  --duration S        seconds of load and faults (default 600)
  --seed N            random seed of the fault schedule (default: from the clock; printed)
  --dir DIR           stack folder (default: STACK_DIR or .stack, as bun scripts/stack.ts)
  --workers N         worker processes (default 2)
  --rate R            tasks submitted per second (default 10)
  --parts LIST        parts to hit, comma-separated: worker,api,redis,broker (default all)
  --actions LIST      kill,stop,restart (default all)
  --gap MIN-MAX       seconds between faults (default 5-20)
  --max-pause S       longest SIGSTOP of Redis, the broker or the API (default 20)
  --settle S          seconds to wait for the last tasks after the faults end (default 300)
  --agent-delay-ms MS how long each run of the agent takes (default 1000)
  --invisible-ms MS   MQ_INVISIBLE_MS of its workers (default 20000)
  --tenant-concurrency C  API keys on (AUTH_MODE=keys); every other task goes to a tenant limited to
                      C running at once (parked, released); the report checks the limit held
  --delayed F         share of the tasks sent with delay_ms 1-20 s (default 0); checks none ran
                      early; the workers' STALLED_AFTER_MS is then 60 s (a lost timer message)
  --cancel F          share of the accepted tasks canceled 0-3 s after their 202 (default 0);
                      checks that every cancellation answered 202 ended canceled
  --idempotent        each POST with an Idempotency-Key, retried with it for up to 90 s (503, no
                      answer); checks every answer for a key named one task and only it ran
  --keep              keep the run folder (child logs, run records)
  --json              print one JSON report on stdout and nothing else there
Environment: the stack's endpoints, as for api.ts (REDIS_URL or REDIS_PORT, MQ_ENDPOINT, MQ_NAMESRV,
STACK_BROKER_PORT, STACK_PROXY_REMOTING_PORT when not the defaults).`;

export { ArgsError };

function num(name: string, v: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER, int = true): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min || n > max)
    throw new ArgsError(`--${name} must be ${int ? "an integer" : "a number"} in ${min}..${max}, got ${JSON.stringify(v)}`);
  return n;
}

function list<T extends string>(name: string, v: string | undefined, all: readonly T[]): T[] {
  if (v === undefined) return [...all];
  const items = v.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((s) => !(all as readonly string[]).includes(s));
  if (bad.length || !items.length) throw new ArgsError(`--${name} takes a comma-separated list of ${all.join(", ")}; got ${JSON.stringify(v)}`);
  return [...new Set(items)] as T[];
}

export function parseChaosArgs(argv: string[]): ChaosOptions {
  const values = strictArgs(argv, {
    duration: { type: "string" },
    seed: { type: "string" },
    dir: { type: "string" },
    workers: { type: "string" },
    rate: { type: "string" },
    parts: { type: "string" },
    actions: { type: "string" },
    gap: { type: "string" },
    "max-pause": { type: "string" },
    settle: { type: "string" },
    "agent-delay-ms": { type: "string" },
    "invisible-ms": { type: "string" },
    "tenant-concurrency": { type: "string" },
    delayed: { type: "string" },
    cancel: { type: "string" },
    idempotent: { type: "boolean" },
    keep: { type: "boolean" },
    json: { type: "boolean" },
  });
  const gap = (values.gap ?? "5-20").split("-");
  if (gap.length !== 2) throw new ArgsError(`--gap must be MIN-MAX seconds, got ${JSON.stringify(values.gap)}`);
  const minGapS = num("gap", gap[0], 5, 0, 3600, false);
  const maxGapS = num("gap", gap[1], 20, minGapS, 3600, false);
  return {
    durationS: num("duration", values.duration, 600, 1, 86_400),
    seed: num("seed", values.seed, Date.now() % 2 ** 31, 0, 2 ** 31 - 1),
    dir: values.dir,
    workers: num("workers", values.workers, 2, 1, 32),
    rate: num("rate", values.rate, 10, 0.1, 10_000, false),
    parts: list("parts", values.parts, PARTS),
    actions: list("actions", values.actions, ACTIONS),
    minGapS,
    maxGapS,
    maxPauseS: num("max-pause", values["max-pause"], 20, 1, 600, false),
    settleS: num("settle", values.settle, 300, 0, 86_400),
    agentDelayMs: num("agent-delay-ms", values["agent-delay-ms"], 1000, 0, 3_600_000),
    invisibleMs: num("invisible-ms", values["invisible-ms"], 20_000, 10_000, 43_200_000),
    ...(values["tenant-concurrency"] === undefined ? {} : { tenantConcurrency: num("tenant-concurrency", values["tenant-concurrency"], 0, 1, 10_000) }),
    delayed: num("delayed", values.delayed, 0, 0, 1, false),
    cancel: num("cancel", values.cancel, 0, 0, 1, false),
    idempotent: values.idempotent ?? false,
    json: values.json ?? false,
    keep: values.keep ?? false,
  };
}

/** A small seeded generator (mulberry32): the same seed gives the same fault schedule. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    between: (lo: number, hi: number) => lo + (hi - lo) * next(),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
