// Task state in Redis. Every transition is one Lua script (lib/lua); this file turns their
// integer codes into typed outcomes. Layout: see lib/keys.ts and the README.
import { keys as buildKeys, type Keys } from "./keys.ts";
import type { AgentResult, TaskStatus, TaskView } from "./model.ts";
import { runScript, type Redis } from "./scripts.ts";

export type Claim =
  | { kind: "claimed"; attempt: number }
  | { kind: "finished"; status: "done" | "failed" }
  | { kind: "busy"; leaseLeftMs: number };

export type FinishOutcome = "written" | "not_owner" | "already_finished";
const FINISH: Record<number, FinishOutcome> = { 1: "written", 0: "not_owner", 2: "already_finished" };

export interface DeadLetter {
  reason: string;
  message_id?: string;
  task_id?: string;
  body: string;
  at: string;
}

export class TaskStore {
  readonly keys: Keys;
  /**
   * @param stalledAfterMs a running task whose lease ended, or a retrying task whose delay ended, this
   *   long ago without being claimed again is re-published (see `stalled`, lib/lua/reap.lua)
   */
  constructor(
    readonly redis: Redis,
    readonly ttlSeconds: number,
    prefix = "",
    readonly stalledAfterMs = 600_000,
  ) {
    this.keys = buildKeys(prefix);
  }

  private taskKeys(id: string) {
    return [this.keys.task(id), this.keys.legacyStatus(id)];
  }
  private outboxKeys() {
    return [this.keys.outbox, this.keys.outboxBodies];
  }

  /** Records a queued task and its outbox entry. False if the id exists already. */
  async create(id: string, userId: string, body: string, now = Date.now()): Promise<boolean> {
    const r = await runScript(this.redis, "create", [...this.taskKeys(id), ...this.outboxKeys()], [
      id, userId, now, this.ttlSeconds, body,
    ]);
    return r === 1;
  }

  async markPublished(id: string): Promise<void> {
    await runScript(this.redis, "published", this.outboxKeys(), [id]);
  }

  /** The publish failed: removes the task unless a worker already saw it. */
  async unpublish(id: string): Promise<boolean> {
    return (await runScript(this.redis, "unpublish", [...this.taskKeys(id), ...this.outboxKeys()], [id])) === 1;
  }

  /** Outbox entries older than `olderThanMs`: accepted, publish never confirmed. */
  async dueOutbox(olderThanMs: number, limit = 100, now = Date.now()): Promise<{ id: string; body: string }[]> {
    const ids = (await this.redis.zRangeByScore(this.keys.outbox, 0, now - olderThanMs, {
      LIMIT: { offset: 0, count: limit },
    })) as string[];
    if (ids.length === 0) return [];
    const bodies = (await this.redis.hmGet(this.keys.outboxBodies, ids)) as (string | null)[];
    const out: { id: string; body: string }[] = [];
    ids.forEach((id, i) => {
      const body = bodies[i];
      if (body) out.push({ id, body });
    });
    return out;
  }

  /**
   * `message` (the request body) is sent only for a task Redis does not know (a second round trip),
   * to adopt it with the body it needs if it stalls: the usual claim carries no body.
   */
  async claim(id: string, token: string, leaseMs: number, userId: string, now = Date.now(), message = ""): Promise<Claim> {
    const run = async (body: string, mode: "probe" | "adopt") =>
      (await runScript(this.redis, "claim", [...this.taskKeys(id), this.keys.stalled], [
        token, now, leaseMs, this.ttlSeconds, userId, id, this.stalledAfterMs, body, mode,
      ])) as [number, number | string];
    let r = await run("", "probe");
    if (r[0] === 4) r = await run(message, "adopt");
    if (r[0] === 1) return { kind: "claimed", attempt: Number(r[1]) };
    if (r[0] === 2) return { kind: "finished", status: r[1] as "done" | "failed" };
    return { kind: "busy", leaseLeftMs: Number(r[1]) };
  }

  /** True while the claim is ours; false means stop the run. */
  async heartbeat(id: string, token: string, leaseMs: number, now = Date.now()): Promise<boolean> {
    return (
      (await runScript(this.redis, "heartbeat", [this.keys.task(id), this.keys.stalled], [
        token, now, leaseMs, id, this.stalledAfterMs,
      ])) === 1
    );
  }

  /** `backAt`: for retry and release, when the message is due back from RocketMQ. */
  private async finish(id: string, token: string, mode: string, data: string, userId = "", now = Date.now(), backAt = now) {
    const r = await runScript(this.redis, "finish", [...this.taskKeys(id), this.keys.stalled], [
      token, now, this.ttlSeconds, mode, data, userId, id, backAt, this.stalledAfterMs,
    ]);
    return FINISH[Number(r)] ?? "not_owner";
  }
  complete(id: string, token: string, result: AgentResult) {
    return this.finish(id, token, "done", JSON.stringify(result));
  }
  fail(id: string, token: string, error: string) {
    return this.finish(id, token, "failed", error);
  }
  /** Back to queued; the message comes back after `delayMs`. */
  retry(id: string, token: string, error: string, delayMs: number, now = Date.now()) {
    return this.finish(id, token, "retry", error, "", now, now + delayMs);
  }
  release(id: string, token: string) {
    return this.finish(id, token, "release", "");
  }
  /** Marks a task failed without a claim: for messages that can never be processed. */
  forceFail(id: string, error: string, userId = "") {
    return this.finish(id, "", "force", error, userId);
  }
  /** Marks a task failed because RocketMQ dead-lettered its message, unless a runner holds a live lease. */
  deadLettered(id: string, error: string, userId = "") {
    return this.finish(id, "", "dead", error, userId);
  }

  /**
   * Stalled tasks (lib/lua/reap.lua) with the request message to publish again; each is returned at
   * most once per `stalledAfterMs`, whoever asks.
   */
  async stalled(limit = 100, now = Date.now()): Promise<{ id: string; body: string }[]> {
    const flat = (await runScript(this.redis, "reap", [this.keys.stalled], [
      now, this.stalledAfterMs, limit, this.keys.task(""),
    ])) as string[];
    const out: { id: string; body: string }[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push({ id: flat[i]!, body: flat[i + 1]! });
    return out;
  }

  async get(id: string): Promise<TaskView | null> {
    const h = (await this.redis.hGetAll(this.keys.task(id))) as Record<string, string>;
    if (!h || !h.status) return null;
    const iso = (ms?: string) => (ms ? new Date(Number(ms)).toISOString() : undefined);
    const view: TaskView = {
      task_id: id,
      status: h.status as TaskStatus,
      result: h.result ? (JSON.parse(h.result) as AgentResult) : null,
      user_id: h.user_id,
      attempts: Number(h.attempts ?? 0),
      created_at: iso(h.created_at),
      updated_at: iso(h.updated_at),
      started_at: iso(h.started_at),
      finished_at: iso(h.finished_at),
    };
    if (h.error) view.error = h.error;
    return view;
  }

  /** Sets a message aside with its reason (a capped list, newest first). */
  async deadLetter(entry: DeadLetter, cap = 10_000): Promise<void> {
    await this.redis
      .multi()
      .lPush(this.keys.deadLetters, JSON.stringify(entry))
      .lTrim(this.keys.deadLetters, 0, cap - 1)
      .exec();
  }

  async deadLetters(count = 100): Promise<DeadLetter[]> {
    const items = (await this.redis.lRange(this.keys.deadLetters, 0, count - 1)) as string[];
    return items.map((s) => JSON.parse(s) as DeadLetter);
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === "PONG";
  }
}
