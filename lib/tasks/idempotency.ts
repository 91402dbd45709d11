// POST /tasks with an Idempotency-Key: one task per (tenant, user, key), however often and however
// concurrently the request is repeated.
// - The key is reserved in Redis (lib/lua/idem-reserve.lua) for a fresh task id BEFORE the task is
//   created or its message sent; only the request holding the reservation submits.
// - The same key with the same body (fingerprint: SHA-256 of the canonical body) replays the first
//   task: 200, its id and current status, `Idempotent-Replayed: true`. Another body: 409.
// - A replay never hands out a task id that will not run. A request answered 503 made its task a
//   tombstone (lib/submit.ts) and frees the key (idem-settle.lua "release"), so the retry makes a new
//   task. Until the first request has its answer, a repeat waits for it (in this process: on its
//   promise; in another API process: polling the record), up to WAIT_MS, then 409
//   idempotency_in_progress. A task is replayed only once it is accepted: its record says so, or its
//   send was confirmed, or a worker claimed it.
// - A request that died holding the key (its API process killed) leaves a reservation that is taken
//   over after STALE_MS: its task, if the create landed and the send did not, is made a tombstone first
//   (lib/lua/abandon.lua), unless the outbox sweeper sent it meanwhile (then it is replayed).
import type { Config } from "../config.ts";
import { HttpError, toError, UnavailableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Context } from "../observe/tracing.ts";
import type { TaskInput, TaskStatus } from "../model.ts";
import { fingerprint, IdempotencyRecords } from "../state/idempotency.ts";
import type { TaskStore } from "../store.ts";
import type { TaskService } from "../submit.ts";

/** How long a repeat waits for the first request's answer before 409 idempotency_in_progress. */
const WAIT_MS = 10_000;
/**
 * A reservation this old whose task is not accepted belongs to a request that died. Far above the
 * longest a live request holds it: two Redis timeouts, a send (two tries of MQ_REQUEST_TIMEOUT_MS),
 * a tombstone and the release, plus a producer's start.
 */
export const STALE_MS = 60_000;
const POLL_MS = 100;

export type SubmitAnswer = { replayed: boolean; body: { task_id: string; status: TaskStatus } };

export class IdempotentSubmit {
  readonly records: IdempotencyRecords;
  /** requests of this process holding a reservation: record key -> its task id and answer */
  readonly #inflight = new Map<string, { taskId: string; done: Promise<unknown> }>();

  constructor(
    private readonly cfg: Config,
    private readonly store: TaskStore,
    private readonly tasks: TaskService,
    private readonly log: Logger,
  ) {
    this.records = new IdempotencyRecords(store.redis, store.keys, cfg.IDEMPOTENCY_TTL_SECONDS);
  }

  /** `runAt` (ms): a delayed task's due time; `trace`: the request's span; as for TaskService.submit. */
  async submit(idempotencyKey: string, input: TaskInput, tenant?: string, runAt?: number, trace?: Context): Promise<SubmitAnswer> {
    const key = this.records.keyOf(tenant ?? "", input.user_id, idempotencyKey);
    const fp = fingerprint(input);
    const deadline = Date.now() + WAIT_MS;
    let takeOverFrom = "";
    for (;;) {
      const taskId = crypto.randomUUID();
      const r = await this.#redis(() => this.records.reserve(key, fp, taskId, takeOverFrom));
      takeOverFrom = "";
      if (r.kind === "conflict")
        throw new HttpError(409, "idempotency_conflict", `Idempotency-Key ${JSON.stringify(idempotencyKey)} was used with another body by this user`);
      if (r.kind === "reserved") return { replayed: false, body: await this.#first(key, taskId, input, tenant, runAt, trace) };

      const mine = this.#inflight.get(key);
      if (mine && mine.taskId === r.taskId) {
        // Concurrent repeats share the first request's answer: accepted (look again: a replay), or its
        // 503 (the same outage would refuse them too; one at a time, a burst would wait out one send
        // timeout after another).
        const failed = await mine.done.then(() => undefined, (e: unknown) => e ?? new Error("first request failed"));
        if (failed) throw failed;
        continue;
      }
      const next = await this.#redis(() => this.#next(r.taskId, r.state, r.ageMs));
      if (next.kind === "replay") return { replayed: true, body: { task_id: r.taskId, status: next.status } };
      if (next.kind === "take_over") {
        this.log.info("Idempotency-Key taken over: its task was never accepted", { task_id: r.taskId, reason: next.reason });
        takeOverFrom = r.taskId;
        continue;
      }
      if (Date.now() >= deadline)
        throw new HttpError(409, "idempotency_in_progress",
          `the first request with Idempotency-Key ${JSON.stringify(idempotencyKey)} is still in progress; retry in 1 s`, { "retry-after": "1" });
      await Bun.sleep(POLL_MS);
    }
  }

  /** The request holding the reservation submits; a 503 frees the key, a 202 marks it accepted. */
  async #first(key: string, taskId: string, input: TaskInput, tenant: string | undefined, runAt: number | undefined, trace: Context | undefined) {
    const done = (async () => {
      let accepted;
      try {
        accepted = await this.tasks.submit(input, tenant, { taskId, runAt, trace });
      } catch (e) {
        // 503: the task never runs (a tombstone, lib/submit.ts). The client's retry makes a new one; if
        // the release is lost, the retry finds the tombstone and takes the key over. While the
        // tombstone is still to be written (a create that timed out may land late) the key is kept:
        // were this process to die first, the outbox would send the task, and a retry that had
        // found the key free would make a second one. Kept, the retry waits for the tombstone and
        // takes the key over, or replays the task the outbox sent (#next).
        if (this.tasks.tombstonePending(taskId))
          this.log.info("Idempotency-Key kept until its task's tombstone is written", { task_id: taskId });
        else
          await this.records.release(key, taskId).catch((err) =>
            this.log.warn("Idempotency-Key not freed after a 503; the retry takes it over", { task_id: taskId, error: toError(err) }));
        throw e;
      }
      // Not needed for safety (a replay also reads the task's own progress); it spares the repeats a look.
      await this.records.accept(key, taskId).catch((err) =>
        this.log.warn("Idempotency-Key not marked accepted; repeats read the task instead", { task_id: taskId, error: toError(err) }));
      return accepted;
    })();
    this.#inflight.set(key, { taskId, done });
    try {
      return await done;
    } finally {
      if (this.#inflight.get(key)?.done === done) this.#inflight.delete(key);
    }
  }

  /** What to do with a key held for `taskId` (same body): replay it, wait for its request, or take it over. */
  async #next(taskId: string, state: "pending" | "accepted", ageMs: number): Promise<
    { kind: "replay"; status: TaskStatus } | { kind: "wait" } | { kind: "take_over"; reason: string }
  > {
    const task = await this.records.progress(this.store.keys.task(taskId));
    if (task.status === "rejected") return { kind: "take_over", reason: "its request was answered 503 (a tombstone)" };
    const accepted = state === "accepted" || task.sent || task.attempts > 0 ||
      (task.status !== undefined && task.status !== "queued" && task.status !== "scheduled");
    if (accepted) {
      const view = await this.store.get(taskId);
      if (view) return { kind: "replay", status: view.status };
      return { kind: "take_over", reason: "its task is gone (expired or deleted)" };
    }
    if (ageMs < STALE_MS) return { kind: "wait" };
    // Its request died between reserving and sending. Unless its task got out after all (the outbox
    // sweeper), make sure it never runs, then take the key.
    if (await this.store.abandon(taskId)) return { kind: "take_over", reason: `its request left it unsent for ${Math.round(ageMs / 1000)} s` };
    return { kind: "wait" }; // sent meanwhile: the next look replays it
  }

  async #redis<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new UnavailableError("redis", this.cfg.RETRY_AFTER_SECONDS, { cause: e });
    }
  }
}
