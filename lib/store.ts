// Task state in Redis. Every per-task transition is one Lua script (lib/lua) on the task's keys,
// which share one hash tag (lib/keys.ts); this file turns their codes into typed outcomes. The
// global sets (outbox, stalled) are bucketed *hints*, written before the transition that needs
// them and verified against the task by the sweeper and the reaper, so the same calls work on one
// node and on Redis Cluster. All times in the scripts are Redis's own clock (TIME).
import { keys as buildKeys, type Keys } from "./keys.ts";
import type { AgentResult, TaskProgress, TaskStatus, TaskUsage, TaskView } from "./model.ts";
import { commandTimeout, isCluster, neverSent, runScript, send, type Redis } from "./scripts.ts";
import { RedisClock } from "./state/redis-clock.ts";
import { pingRedis } from "./redis.ts";
import type { Config } from "./config.ts";

/** Most tasks one `sent` call marks (one node); a larger turn is split. */
const SENT_BATCH_MAX = 256;

export type Claim =
  /** waitedMs: since the task was created, on Redis's clock (absent from an older claim.lua) */
  | { kind: "claimed"; attempt: number; waitedMs?: number }
  | { kind: "finished"; status: "done" | "failed" | "canceled" | "rejected" }
  | { kind: "busy"; leaseLeftMs: number }
  /**
   * The agent's outcome is recorded and only its result message is still to publish (a publish
   * failed before), or `exhausted`: every run so far began and never ended, so the task was failed
   * now. Either way: publish, then `published()`; never run the agent.
   */
  | { kind: "publish"; attempts: number; outcome: "done" | "failed" | "canceled"; result?: AgentResult; error?: string; exhausted: boolean }
  /** An earlier run died with its worker: claim it again with `isolated`, running it alone. Nothing was written. */
  | { kind: "suspect"; crashes: number };

/**
 * A re-queued task's `replayed` marker (lib/keys.ts) is kept DEAD_LETTER_TTL_SECONDS plus this: a
 * dead letter younger than DEAD_LETTER_TTL_SECONDS by its worker's clock then finds the marker of any
 * re-queue since (lib/ops/tasks.ts replayDeadLetters), with an hour for the clocks to disagree.
 */
export const REPLAYED_MARGIN_SECONDS = 3_600;

/** requeue()'s answer: re-queued with the body to publish, or why not (nothing written). */
export type Requeue =
  | { kind: "requeued"; body: string }
  | { kind: "not_failed"; status: string }
  /** Redis no longer knows it, but it was re-queued before (at: when): not recorded anew from a body */
  | { kind: "replayed"; at: string }
  | { kind: "unknown" | "no_message" };


/** `canceled`: the run's cancellation was asked, so it was recorded canceled instead (publish that). */
export type FinishOutcome = "written" | "not_owner" | "already_finished" | "canceled" | "pending" | "held";
const FINISH: Record<number, FinishOutcome> = { 1: "written", 0: "not_owner", 2: "already_finished", 3: "canceled", 4: "pending", 5: "held" };

/** What lib/lua/cancel.lua did (POST /tasks/:id/cancel). */
export type CancelOutcome =
  /** canceled now, held under `token`: publish its canceled result, then published() (or release()) */
  | { kind: "canceled"; attempts: number; userId: string }
  /** running: the cancellation is asked; its worker aborts the run (tell it: the cancel channel) */
  | { kind: "requested" }
  | { kind: "finished"; status: string }
  | { kind: "not_found" };

/** create() failed; `written`: whether the task may be in Redis anyway ("maybe": a timeout). */
export class CreateError extends Error {
  override name = "CreateError";
  constructor(readonly written: "no" | "maybe" | "yes", cause: unknown) {
    super(`task not recorded: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export interface DeadLetter {
  reason: string;
  message_id?: string;
  task_id?: string;
  body: string;
  at: string;
}

export interface StoreOptions {
  /** REDIS_BUCKETS */
  buckets?: number;
  /** DEAD_LETTER_TTL_SECONDS */
  deadLetterTtlSeconds?: number;
  /** MAX_ATTEMPTS: a claim of a task with this many unfinished runs fails it */
  maxAttempts?: number;
}

export class TaskStore {
  readonly keys: Keys;
  readonly maxAttempts: number;
  readonly deadLetterTtlSeconds: number;
  /** Redis's time, for the deadline a create carries (createAt) */
  readonly clock?: RedisClock;
  /**
   * @param stalledAfterMs a running task whose lease ended, or a retrying task whose delay ended, this
   *   long ago without being claimed again is re-published (see `stalled`, lib/lua/reap.lua)
   */
  constructor(
    readonly redis: Redis,
    readonly ttlSeconds: number,
    prefix = "",
    readonly stalledAfterMs = 600_000,
    opts: StoreOptions = {},
  ) {
    this.keys = buildKeys(prefix, opts.buckets ?? 16);
    // A client without a command timeout waits for every answer: its creates need no deadline.
    const timeoutMs = commandTimeout(redis);
    this.clock = timeoutMs ? new RedisClock(redis, timeoutMs, this.keys.outboxLock) : undefined;
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.deadLetterTtlSeconds = opts.deadLetterTtlSeconds ?? 7 * 86_400;
  }

  static fromConfig(redis: Redis, cfg: Config): TaskStore {
    return new TaskStore(redis, cfg.TASK_TTL_SECONDS, cfg.REDIS_PREFIX, cfg.STALLED_AFTER_MS, {
      buckets: cfg.REDIS_BUCKETS,
      deadLetterTtlSeconds: cfg.DEAD_LETTER_TTL_SECONDS,
      maxAttempts: cfg.MAX_ATTEMPTS,
    });
  }

  /** KEYS of every per-task script: the hash, the legacy status and the events stream (one slot). */
  private taskKeys(id: string) {
    return [this.keys.task(id), this.keys.legacyStatus(id), this.keys.events(id)];
  }
  outboxKey(id: string) {
    return this.keys.outbox(this.keys.bucketOf(id));
  }
  stalledKey(id: string) {
    return this.keys.stalled(this.keys.bucketOf(id));
  }
  private hint(zset: string, mode: "add" | "at" | "drop", id: string, ms: number | string) {
    return runScript(this.redis, "hint", [zset], [mode, id, ms]);
  }
  private zrem(zset: string, id: string) {
    return send(this.redis, zset, ["ZREM", zset, id]);
  }

  /**
   * Records a queued task (with its request message) and, first, its outbox hint. False if the id
   * exists already. Throws CreateError if either write failed; unless it says the task was certainly
   * not written, the caller must abandon() the id (the create may still land). `tenant`: the API
   * key's tenant, recorded in the same script (the task's owner for GET, lib/http/auth.ts). `runAt`
   * (ms): a delayed task, recorded `scheduled` (create.lua).
   */
  async create(id: string, userId: string, body: string, tenant = "", runAt?: number): Promise<boolean> {
    return (await this.createAt(id, userId, body, tenant, runAt)) > 0;
  }

  /** create(), answering the task's created_at (ms, Redis time), or 0 if the id exists already. */
  async createAt(id: string, userId: string, body: string, tenant = "", runAt?: number): Promise<number> {
    // One node: sent together on one connection, so the hints are applied first, whatever happens to
    // this process, at no extra round trip. Redis Cluster: the hints' buckets live on other nodes than
    // the task, over other connections, so the create could land while a hint never does (a crash
    // in between) and no sweeper would send the task: there the hints are awaited first (one more
    // round trip of latency per create; concurrent creates still overlap). A delayed
    // task is also watched from its due time on (reap.lua): if its timer message never comes through
    // (a forward dead-lettered, a broker lost it), the reaper sends it again.
    const hints = [this.hint(this.outboxKey(id), "add", id, 0)];
    if (runAt !== undefined) hints.push(this.hint(this.stalledKey(id), "at", id, runAt + this.stalledAfterMs));
    if (isCluster(this.redis)) {
      const h = await Promise.allSettled(hints);
      const lost = h.find((r) => r.status === "rejected");
      if (lost) throw new CreateError("no", lost.reason); // the create was not sent
      hints.length = 0;
    }
    // The deadline is taken before the send: the script refuses itself by the time this process
    // stops waiting for it, so a 503 for a timeout never leaves a task behind (lib/state/redis-clock.ts).
    const answerBy = this.clock?.answerBy() ?? "";
    const [c, ...h] = await Promise.allSettled([
      runScript(this.redis, "create", this.taskKeys(id), [userId, this.ttlSeconds, body, tenant, runAt ?? "", answerBy]),
      ...hints,
    ]);
    if (c!.status === "rejected") throw new CreateError(neverSent(c!.reason) ? "no" : "maybe", c!.reason);
    if (c.value === -1) throw new CreateError("no", new Error("the create reached Redis after its deadline (Redis slow or hung): not written"));
    const lost = h.find((r) => r.status === "rejected");
    if (lost) throw new CreateError("yes", lost.reason);
    return Number(c.value);
  }

  /**
   * An operator re-queues a task that failed for good (lib/lua/requeue.lua): its outbox hint first,
   * as create() writes it, so the outbox sweeper sends the message if the caller cannot. `body`: the
   * request message to use when the task kept none. Then publish the returned body and markSent().
   * Every re-queue leaves the task's `replayed` marker (kept DEAD_LETTER_TTL_SECONDS + 1 h): a task Redis
   * no longer knows is recorded anew from `body` only if it was never re-queued.
   */
  async requeue(id: string, body = "", userId = ""): Promise<Requeue> {
    await this.hint(this.outboxKey(id), "add", id, 0);
    const args = [this.ttlSeconds, body, userId, tenantOf(body), this.deadLetterTtlSeconds + REPLAYED_MARGIN_SECONDS];
    const keys = [...this.taskKeys(id), this.keys.replayed(id)];
    const [code, data] = (await runScript(this.redis, "requeue", keys, args)) as [number, string];
    if (code === 1) return { kind: "requeued", body: data };
    if (code === 4) return { kind: "replayed", at: new Date(Number(data)).toISOString() };
    // The hint is left: it may be the only one of a task still queued and unsent (its API died after
    // the create), which the sweeper must still send; for any other, the sweeper drops it
    // (outbox-check.lua). (A ZREM here removed that task's hint, leaving it queued until its TTL.)
    if (code === 0) return { kind: "not_failed", status: data };
    return { kind: code === 2 ? "unknown" : "no_message" };
  }

  /** Re-writes a task's outbox hint as if written `agoMs` ago, so that a sweep takes it that much sooner. */
  async backdateOutbox(id: string, agoMs: number): Promise<void> {
    await this.hint(this.outboxKey(id), "add", id, -agoMs);
  }

  /** RocketMQ accepted the request message: mark the task sent, and drop its outbox hint. */
  markSent(id: string): Promise<void> {
    if (isCluster(this.redis))
      // Side by side: the hint only serves a re-send, and the message is out either way.
      return Promise.all([runScript(this.redis, "sent", [this.keys.task(id)], []), this.zrem(this.outboxKey(id), id)]).then(() => {});
    // One node: the marks asked for in one run of the microtask queue (a send batch's confirmations
    // resume their POSTs one after the other in it) go as one script call, without waiting a turn.
    return new Promise<void>((resolve, reject) => {
      this.#sentPending.push({ id, resolve, reject });
      if (this.#sentPending.length === 1) queueMicrotask(() => this.#flushSent());
    });
  }
  #sentPending: { id: string; resolve(): void; reject(e: unknown): void }[] = [];
  #flushSent() {
    const batch = this.#sentPending.splice(0);
    for (let i = 0; i < batch.length; i += SENT_BATCH_MAX) {
      const part = batch.slice(i, i + SENT_BATCH_MAX);
      const ids = part.map((p) => p.id);
      runScript(this.redis, "sent", [...ids.map((id) => this.keys.task(id)), ...ids.map((id) => this.outboxKey(id))], ids).then(
        () => part.forEach((p) => p.resolve()),
        (e) => part.forEach((p) => p.reject(e)),
      );
    }
  }

  /**
   * The client is told the task was not accepted: make sure it never runs (a tombstone, see
   * lib/lua/abandon.lua). True: it never will; false: a worker or a confirmed send got there first.
   */
  async abandon(id: string): Promise<boolean> {
    const r = (await runScript(this.redis, "abandon", this.taskKeys(id), [this.ttlSeconds])) === 1;
    await this.zrem(this.outboxKey(id), id).catch(() => {}); // a stale hint is dropped by the sweeper anyway
    return r;
  }

  /**
   * Outbox hints older than `olderThanMs` whose task is still unsent, with the message to send (and a
   * delayed task's due time, ms); hints of tasks that say otherwise are dropped on the way.
   */
  async dueOutbox(olderThanMs: number, limit = 100): Promise<{ id: string; body: string; runAt?: number }[]> {
    const out: { id: string; body: string; runAt?: number }[] = [];
    for (let b = 0; b < this.keys.buckets && out.length < limit; b++) {
      const zset = this.keys.outbox(b);
      const flat = (await runScript(this.redis, "due", [zset], [limit - out.length, olderThanMs])) as string[];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const id = flat[i]!;
        const r = (await runScript(this.redis, "outbox-check", [this.keys.task(id)], [])) as [number, string?, string?];
        if (r[0] === 1 && r[1]) out.push({ id, body: r[1], ...(r[2] ? { runAt: Number(r[2]) } : {}) });
        else await this.hint(zset, "drop", id, flat[i + 1]!);
      }
    }
    return out;
  }

  /**
   * Claims a task to run it. The stalled hint is written first (with the claim, on one connection).
   * `message` (the request body) is sent only for a task Redis does not know (a second round trip),
   * to adopt it with the body it needs if it stalls: the usual claim carries no body.
   */
  async claim(
    id: string, token: string, leaseMs: number, userId: string, opts: { message?: string; maxAttempts?: number; isolated?: boolean } = {},
  ): Promise<Claim> {
    const max = opts.maxAttempts ?? this.maxAttempts;
    const isolated = opts.isolated ? "isolated" : "";
    // Adopting records the message's tenant too: without it the owner's GET and cancel answer 404.
    const run = (body: string, mode: "probe" | "adopt") =>
      runScript(this.redis, "claim", this.taskKeys(id), [token, leaseMs, this.ttlSeconds, userId, max, body, mode, isolated, tenantOf(body)]) as Promise<
        [number, number | string, string?, string?]
      >;
    const [h, c] = await Promise.allSettled([this.hint(this.stalledKey(id), "add", id, leaseMs + this.stalledAfterMs), run("", "probe")]);
    if (c.status === "rejected") throw c.reason;
    let r = c.value;
    if (h.status === "rejected") {
      // Nothing may run without its hint: give a fresh claim back (not counted) and fail the call.
      if (r[0] === 1 || r[0] === 5 || r[0] === 6) await this.finish(id, token, "release").catch(() => {});
      throw h.reason;
    }
    if (r[0] === 4) r = await run(opts.message ?? "", "adopt");
    switch (r[0]) {
      case 1:
        return { kind: "claimed", attempt: Number(r[1]), ...(r[2] !== undefined ? { waitedMs: Number(r[2]) } : {}) };
      case 2:
        return { kind: "finished", status: r[1] as "done" | "failed" | "canceled" | "rejected" };
      case 3:
        return { kind: "busy", leaseLeftMs: Number(r[1]) };
      case 5:
        if (r[2] === "canceled") return { kind: "publish", attempts: Number(r[1]), outcome: "canceled", exhausted: false };
        return r[2] === "done"
          ? { kind: "publish", attempts: Number(r[1]), outcome: "done", result: JSON.parse(r[3]!) as AgentResult, exhausted: false }
          : { kind: "publish", attempts: Number(r[1]), outcome: "failed", error: r[3] ?? "", exhausted: false };
      case 6:
        return { kind: "publish", attempts: Number(r[1]), outcome: "failed", error: String(r[2]), exhausted: true };
      case 7:
        return { kind: "suspect", crashes: Number(r[1]) };
      default:
        throw new Error(`claim.lua returned ${JSON.stringify(r)}`);
    }
  }

  /** The agent's progress under the claim (latest in the task, and an event); false: not our running claim. */
  async progress(id: string, token: string, progress: TaskProgress): Promise<boolean> {
    return (await runScript(this.redis, "progress", this.taskKeys(id), [token, JSON.stringify(progress)])) === 1;
  }

  /**
   * True while the claim is ours (lease and TTL extended); false means stop the run. "cancel": still
   * ours (extended), but its cancellation was asked (lib/lua/cancel.lua): abort the run, then cancelRun().
   */
  async heartbeat(id: string, token: string, leaseMs: number): Promise<boolean | "cancel"> {
    const r = Number(await runScript(this.redis, "heartbeat", this.taskKeys(id), [token, leaseMs, this.ttlSeconds]));
    return r === 2 ? "cancel" : r === 1;
  }

  /**
   * Renews the TTL of a parked task's keys while it still waits, queued or scheduled (lib/lua/keep.lua):
   * parked, it has no transition to renew them. `park`: also mark it parked, which keeps the stalled
   * check from re-sending it until its release or a claim. "gone": its record expired or was lost.
   */
  async keepWaiting(id: string, park = false): Promise<"kept" | "not_waiting" | "gone"> {
    const r = Number(await runScript(this.redis, "keep", this.taskKeys(id), [this.ttlSeconds, park ? "park" : ""]));
    return r === 1 ? "kept" : r === 0 ? "not_waiting" : "gone";
  }

  /**
   * Cancels a task (lib/lua/cancel.lua). `token` holds a task canceled now for `holdMs` while the
   * caller publishes its canceled result; the stalled hint is written first, so that a caller that
   * dies meanwhile leaves it to the reaper.
   */
  async cancel(id: string, token: string, holdMs: number): Promise<CancelOutcome> {
    await this.hint(this.stalledKey(id), "add", id, holdMs + this.stalledAfterMs);
    const r = (await runScript(this.redis, "cancel", this.taskKeys(id), [this.ttlSeconds, holdMs, token])) as [number, (number | string)?, string?];
    switch (r[0]) {
      case 1:
        return { kind: "canceled", attempts: Number(r[1]), userId: String(r[2] ?? "") };
      case 2:
        return { kind: "finished", status: String(r[1]) };
      case 3:
        return { kind: "requested" };
      default:
        return { kind: "not_found" };
    }
  }

  private async finish(
    id: string, token: string, mode: string, data = "", userId = "", delayMs = 0, usage?: TaskUsage, tenant = "",
  ): Promise<FinishOutcome> {
    const args = [token, this.ttlSeconds, mode, data, userId, delayMs, usage ? JSON.stringify(usage) : "", tenant];
    const r = await runScript(this.redis, "finish", this.taskKeys(id), args);
    const outcome = FINISH[Number(r)] ?? "not_owner";
    // Not awaited: nothing waits on it, and a hint left behind is dropped by the reaper.
    // ("dead" and "force" leave a failure result to publish under a claim.)
    if (outcome === "written" && mode === "published")
      void this.zrem(this.stalledKey(id), id).catch(() => {});
    return outcome;
  }
  /** The agent's result, recorded under the claim before its message is published. */
  recordResult(id: string, token: string, result: AgentResult, usage?: TaskUsage) {
    return this.finish(id, token, "done", JSON.stringify(result), "", 0, usage);
  }
  /** Failed for good under the claim; the failure result is still to publish, then `published()`. */
  fail(id: string, token: string, error: string, usage?: TaskUsage) {
    return this.finish(id, token, "failed", error, "", 0, usage);
  }
  /** The task's LLM usage summed over its attempts so far, if any was recorded. */
  async usage(id: string): Promise<TaskUsage | undefined> {
    const k = this.keys.task(id);
    const u = await send<string | null>(this.redis, k, ["HGET", k, "usage"]);
    return u ? (JSON.parse(u) as TaskUsage) : undefined;
  }
  /** The recorded outcome's result message is out: done (or failed) for good, the task shrunk. */
  published(id: string, token: string) {
    return this.finish(id, token, "published");
  }
  /** The run was aborted because its cancellation was asked: canceled; its result still to publish, then `published()`. */
  cancelRun(id: string, token: string, usage?: TaskUsage) {
    return this.finish(id, token, "canceled", "", "", 0, usage);
  }
  /** recordResult + published, for callers with nothing to publish in between. */
  async complete(id: string, token: string, result: AgentResult): Promise<FinishOutcome> {
    const w = await this.recordResult(id, token, result);
    return w === "written" ? this.published(id, token) : w;
  }
  /** Back to queued; the message comes back after `delayMs`. */
  async retry(id: string, token: string, error: string, delayMs: number, usage?: TaskUsage) {
    await this.hint(this.stalledKey(id), "add", id, delayMs + this.stalledAfterMs);
    return this.finish(id, token, "retry", error, "", delayMs, usage);
  }
  /** Handed back, the run not counted; with an outcome recorded, only the claim is dropped. */
  async release(id: string, token: string, delayMs = 1_000) {
    await this.hint(this.stalledKey(id), "add", id, delayMs + this.stalledAfterMs);
    return this.finish(id, token, "release", "", "", delayMs);
  }
  /**
   * A poison message names this task: failed, only if Redis does not know it (its real message may be
   * fine), its failure result still to publish under `claim` ("written"), then `published()`, or
   * `release()` at shutdown. A later copy of the message takes a claim that ended over ("pending":
   * publish) or finds it live ("held"). `tenant`: the message's, recorded for a task Redis does not
   * know (its owner for GET).
   */
  forceFail(id: string, claim: { token: string; leaseMs: number }, error: string, userId = "", tenant = "") {
    return this.finish(id, claim.token, "force", error, userId, claim.leaseMs, undefined, tenant);
  }
  /**
   * RocketMQ dead-lettered a copy: failed unless finished, live, waiting for its retry or publishing;
   * "canceled" when its cancellation was asked. "written", "canceled" and "pending" (an outcome
   * recorded earlier that no live claim holds) leave a result to publish: claim the copy to publish
   * it (lib/worker/dead-letter.ts). `tenant`: the message's, recorded for a task Redis does not know.
   */
  deadLettered(id: string, error: string, userId = "", tenant = "") {
    return this.finish(id, "", "dead", error, userId, 0, undefined, tenant);
  }

  /**
   * Stalled tasks (lib/lua/reap.lua) with the request message to publish again, from every bucket;
   * each is returned at most once per `stalledAfterMs`, whoever asks. Hints of tasks that need no
   * watching are dropped, and the others moved to when they are next worth a look.
   */
  async stalled(limit = 100): Promise<{ id: string; body: string }[]> {
    const out: { id: string; body: string }[] = [];
    for (let b = 0; b < this.keys.buckets && out.length < limit; b++) {
      const zset = this.keys.stalled(b);
      const flat = (await runScript(this.redis, "due", [zset], [limit - out.length, 0])) as string[];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const id = flat[i]!;
        const r = (await runScript(this.redis, "reap", [this.keys.task(id)], [this.stalledAfterMs])) as [number, number?, string?];
        if (r[0] === 0) await this.hint(zset, "drop", id, flat[i + 1]!);
        else await this.hint(zset, "at", id, Number(r[1]));
        if (r[0] === 2 && r[2]) out.push({ id, body: r[2] });
      }
    }
    return out;
  }

  async get(id: string): Promise<TaskView | null> {
    const key = this.keys.task(id);
    const legacyKey = this.keys.legacyStatus(id);
    const [flat, legacy] = await Promise.all([
      send<string[]>(this.redis, key, ["HGETALL", key]),
      send<string | null>(this.redis, legacyKey, ["GET", legacyKey]),
    ]);
    const h: Record<string, string> = {};
    if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]!] = flat[i + 1]!;
    else Object.assign(h, flat ?? {});
    if (h.status === "rejected") return null;
    // A mixed fleet (README, "Migration"): the original's API and workers write only the status
    // string. Its status is the answer when it is further along than ours, or when we have none.
    const status = furtherAlong(h.status, legacy ?? null);
    if (!status) return null;
    if (!h.status) return { task_id: id, status, result: null, attempts: 0 };
    const iso = (ms?: string) => (ms ? new Date(Number(ms)).toISOString() : undefined);
    const view: TaskView = {
      task_id: id,
      status,
      // A recorded result counts once its message is out (status done).
      result: h.status === "done" && h.result ? (JSON.parse(h.result) as AgentResult) : null,
      user_id: h.user_id,
      attempts: Number(h.attempts ?? 0),
      created_at: iso(h.created_at),
      updated_at: iso(h.updated_at),
      started_at: iso(h.started_at),
      finished_at: iso(h.finished_at),
    };
    if (h.error) view.error = h.error;
    if (h.usage) view.usage = JSON.parse(h.usage) as TaskUsage;
    if (h.run_at) view.run_at = iso(h.run_at);
    if (h.progress) view.progress = JSON.parse(h.progress) as TaskProgress;
    return view;
  }

  /** Sets a message aside with its reason (a capped list, newest first, kept DEAD_LETTER_TTL_SECONDS). */
  async deadLetter(entry: DeadLetter, cap = 10_000): Promise<void> {
    const k = this.keys.deadLetters;
    await send(this.redis, k, ["LPUSH", k, JSON.stringify(entry)]);
    await send(this.redis, k, ["LTRIM", k, "0", String(cap - 1)]);
    await send(this.redis, k, ["EXPIRE", k, String(this.deadLetterTtlSeconds)]);
  }

  async deadLetters(count = 100): Promise<DeadLetter[]> {
    const k = this.keys.deadLetters;
    const items = (await send<string[]>(this.redis, k, ["LRANGE", k, "0", String(count - 1)])) ?? [];
    return items.map((s) => JSON.parse(s) as DeadLetter);
  }

  /** Takes the outbox sweeper's lock for `ms`; false if another process holds it. */
  async lockOutbox(ms = 10_000): Promise<boolean> {
    const k = this.keys.outboxLock;
    return (await send(this.redis, k, ["SET", k, "1", "NX", "PX", String(ms)])) === "OK";
  }

  async ping(): Promise<boolean> {
    return pingRedis(this.redis);
  }
}

/** The tenant a request message names ("" none, or not a message): recorded when a task is recorded anew from it. */
function tenantOf(body: string): string {
  if (!body.includes('"tenant"')) return ""; // the usual claim carries no body; most messages no tenant
  try {
    const t = (JSON.parse(body) as { tenant?: unknown }).tenant;
    return typeof t === "string" ? t : "";
  } catch {
    return "";
  }
}

const RANK: Record<string, number> = { queued: 0, scheduled: 0, running: 1, done: 2, failed: 2, canceled: 2 };
/** The status of the two (ours, the original's) that is further along; ours on a tie. */
function furtherAlong(ours: string | undefined, legacy: string | null): TaskStatus | undefined {
  const theirs = legacy !== null && legacy in RANK ? legacy : undefined;
  if (!ours) return theirs as TaskStatus | undefined;
  return (theirs && RANK[theirs]! > (RANK[ours] ?? -1) ? theirs : ours) as TaskStatus;
}
