// The worker's side of the operations view: wraps the message handler to count what runs now (for
// its announcement, lib/ops/workers.ts) and what finished (per-minute counters and latency buckets,
// lib/ops/minutes.ts; recent failures for the dashboard). Counted in memory and flushed to Redis every
// FLUSH_EVERY_MS, so the cost is a few commands per flush, not per task; a flush that fails is
// added back and tried again (a Redis outage loses no counts unless the process dies meanwhile).
import type { Keys } from "../keys.ts";
import type { MessageView } from "../mq.ts";
import { send, type Redis } from "../scripts.ts";
import type { Handler } from "../worker/loop.ts";
import { bucketOf, epochMinute, field, MINUTE_TTL_SECONDS } from "./minutes.ts";

export const FLUSH_EVERY_MS = 2_000;
/** Recent failures kept for the dashboard. */
export const RECENT_FAILURES = 100;

export class OpsRecorder {
  inFlight = 0;
  finished = 0;
  /** minute -> field -> increment, not yet in Redis */
  #pending = new Map<number, Map<string, number>>();
  #failures: string[] = [];
  #timer?: ReturnType<typeof setInterval>;
  #flushing?: Promise<void>;

  constructor(private readonly redis: Redis, private readonly keys: Keys) {}

  #add(minute: number, f: string, n = 1) {
    let m = this.#pending.get(minute);
    if (!m) this.#pending.set(minute, (m = new Map()));
    m.set(f, (m.get(f) ?? 0) + n);
  }

  /** Counts one handled message by its outcome; `runMs` from its receipt, the end to end from its birth. */
  record(outcome: string, taskId: string | undefined, runMs: number, bornAt?: Date) {
    if (outcome !== "done" && outcome !== "failed" && outcome !== "retry") return;
    const now = Date.now();
    const minute = epochMinute(now);
    this.#add(minute, field.count(outcome));
    if (outcome === "retry") return;
    this.finished++;
    this.#add(minute, field.bucket("run", bucketOf(runMs)));
    if (bornAt) this.#add(minute, field.bucket("e2e", bucketOf(Math.max(0, now - bornAt.getTime()))));
    if (outcome === "failed" && taskId) this.#failures.push(taskId);
  }

  /** The handler, counted: its messages in flight and its outcomes. */
  wrap(handler: Handler): Handler {
    const counted = this.count(handler);
    return async (m, ctx, shutdown) => {
      this.inFlight++;
      try {
        return await counted(m, ctx, shutdown);
      } finally {
        this.inFlight--;
      }
    };
  }

  /** The handler with its outcomes counted only (the dead-letter loop: not the worker's capacity). */
  count(handler: Handler): Handler {
    return async (m: MessageView, ctx, shutdown) => {
      const t0 = performance.now();
      const outcome = await handler(m, ctx, shutdown);
      this.record(outcome, m.keys[0], performance.now() - t0, m.bornTimestamp);
      return outcome;
    };
  }

  /** Writes what was counted since the last flush. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #flush() {
    const pending = this.#pending;
    const failures = this.#failures;
    this.#pending = new Map();
    this.#failures = [];
    const writes: Promise<unknown>[] = [];
    for (const [minute, fields] of pending) {
      const k = this.keys.minute(minute);
      for (const [f, n] of fields) writes.push(send(this.redis, k, ["HINCRBY", k, f, String(n)]));
      writes.push(send(this.redis, k, ["EXPIRE", k, String(MINUTE_TTL_SECONDS)]));
    }
    const fk = this.keys.recentFailures;
    if (failures.length) {
      writes.push(send(this.redis, fk, ["LPUSH", fk, ...failures]));
      writes.push(send(this.redis, fk, ["LTRIM", fk, "0", String(RECENT_FAILURES - 1)]));
      writes.push(send(this.redis, fk, ["EXPIRE", fk, String(MINUTE_TTL_SECONDS)]));
    }
    const results = await Promise.allSettled(writes);
    if (results.some((r) => r.status === "rejected")) {
      // Some increments may have landed: re-adding all could count a few twice, dropping all lose
      // some. Counters of a dashboard: re-add only when nothing landed.
      if (results.every((r) => r.status === "rejected")) {
        for (const [minute, fields] of pending) for (const [f, n] of fields) this.#add(minute, f, n);
        this.#failures.unshift(...failures);
      }
    }
  }

  start(): this {
    this.#timer = setInterval(() => void this.flush().catch(() => {}), FLUSH_EVERY_MS);
    this.#timer.unref?.();
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush().catch(() => {});
  }
}
