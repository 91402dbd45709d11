// Getting a task's request message to RocketMQ, and again when it went missing.
// Accepting: the outbox hint and the queued task go to Redis, the message to RocketMQ, then the task
// is marked sent and the hint dropped. The client gets 202 only when the send was confirmed; when it
// gets 503, the task is made a tombstone (lib/lua/abandon.lua) so that it never runs, even if the
// send or the create reached its server after all (a timeout is not a refusal). If this process
// dies between the create and the send, the outbox sweeper (in the API) sends it.
// Stalled tasks: a task is watched while it runs or waits for a retry (lib/lua/reap.lua). If its
// worker died and RocketMQ no longer has its message (an unflushed broker crash, a message deleted by
// hand, a group reset), nothing would run it again: workers re-publish it (republishStalled).
// Delayed tasks (a `runAt`): recorded `scheduled`, their message sent to the delay topic with its
// delivery time (a RocketMQ timer message), from where workers forward it when due
// (lib/worker/delayed.ts); the outbox re-sends it the same way. Every task is also added to its
// user's listing index (lib/state/user-index.ts), a hint beside the create.
import type { Config } from "./config.ts";
import { UnavailableError, toError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { ACTION, encodeJson, REQUEST_TAG, type Accepted, type RequestMessage, type TaskInput } from "./model.ts";
import type { Publisher } from "./mq.ts";
import { delayTopic, TIMER_LEAD_MS } from "./provision.ts";
import { UserIndex } from "./state/user-index.ts";
import { CreateError, type Requeue, type TaskStore } from "./store.ts";
import { countOutboxResent, countStalledRepublished } from "./observe/metrics.ts";
import type { Context } from "./observe/tracing.ts";
import type { TombstoneJournal } from "./tasks/tombstone-journal.ts";

/** How long a tombstone that Redis did not take at once is retried in the background. */
export const ABANDON_RETRY_MS = 10 * 60_000;
/** An operator's re-queue whose publish failed is swept this soon (its hint backdated): no 503 hides behind it. */
const REQUEUE_SWEEP_MS = 30_000;
/** Ids kept for that (a hung Redis under a flood of POSTs): bounded memory. */
const MAX_PENDING_ABANDONS = 100_000;
/** Confirmed sends whose mark Redis did not take, kept to retry it (as many as tombstones). */
const MAX_PENDING_MARKS = MAX_PENDING_ABANDONS;

export class TaskService {
  /** ids told 503 whose tombstone Redis has not confirmed yet -> since when (ms) */
  readonly #abandoning = new Map<string, number>();
  /** ids answered 202 whose `sent` mark Redis has not confirmed yet -> since when (ms) */
  readonly #unmarked = new Map<string, number>();
  #retryTimer?: ReturnType<typeof setInterval>;
  readonly index: UserIndex;

  constructor(
    private readonly cfg: Config,
    private readonly store: TaskStore,
    /** the process's producer (POST /tasks/:id/cancel publishes canceled results through it) */
    readonly publisher: Publisher,
    private readonly log: Logger,
    /** where pending tombstones outlive this process (api.ts); without one, memory only */
    private readonly journal?: TombstoneJournal,
  ) {
    this.index = UserIndex.fromConfig(store, cfg);
  }

  /**
   * Sends a task's request message: to the request topic, or, for a delayed task not yet due, to the
   * delay topic as a timer message due a timer slot before `runAt` (ms; TIMER_LEAD_MS), which the
   * worker holds until `runAt`. (A delivery time already past is stored for delivery at once.)
   */
  private publish(id: string, body: Buffer, runAt?: number, traceParent?: Context) {
    if (runAt !== undefined && runAt > Date.now())
      return this.publisher.send({
        topic: delayTopic(this.cfg.MQ_TOPIC_REQUEST), tag: REQUEST_TAG, key: id, body, deliverAt: runAt - TIMER_LEAD_MS, traceParent,
      });
    return this.publisher.send({ topic: this.cfg.MQ_TOPIC_REQUEST, tag: REQUEST_TAG, key: id, body, traceParent });
  }

  /**
   * `tenant`: the API key's tenant (AUTH_MODE=keys), kept in the task and its message. `taskId`: an
   * id chosen beforehand (an Idempotency-Key reserved for it, lib/tasks/idempotency.ts). `runAt` (ms):
   * a delayed task (lib/http/schedule.ts checked it), `scheduled` until a worker claims it when due.
   */
  async submit(input: TaskInput, tenant?: string, opts: { taskId?: string; runAt?: number; trace?: Context } = {}): Promise<Accepted> {
    const { taskId: task_id = crypto.randomUUID(), runAt } = opts;
    const run_at = runAt !== undefined ? new Date(runAt).toISOString() : undefined;
    const message: RequestMessage = {
      task_id, user_id: input.user_id, payload: input.content, action: ACTION, ...(tenant ? { tenant } : {}), ...(run_at ? { run_at } : {}),
    };
    const body = encodeJson(message);
    const retry = this.cfg.RETRY_AFTER_SECONDS;
    const accepted: Accepted = run_at ? { task_id, status: "scheduled", run_at } : { task_id, status: "queued" };
    let createdAt: number;
    try {
      // The owner (for GET, lib/http/auth.ts) is written by the same script as the task.
      createdAt = await this.store.createAt(task_id, input.user_id, body.toString("utf8"), tenant, runAt);
    } catch (e) {
      // The create may still land (a timeout): a tombstone, once Redis answers, keeps it from running.
      // Not needed when the client refused to send it (not connected): the common case in an outage.
      this.log.warn("task not accepted: Redis unavailable", { error: toError(e) });
      if (!(e instanceof CreateError && e.written === "no")) this.#abandonLater(task_id);
      throw new UnavailableError("redis", retry, { cause: e });
    }
    // The listing index (another slot), beside the send: a hint, so a failure only leaves the task
    // unlisted and is logged, never the client's problem.
    const indexed = (createdAt > 0 ? this.index.add(tenant ?? "", input.user_id, task_id, createdAt) : Promise.resolve()).catch((e) =>
      this.log.warn("task not added to its user's listing index", { task_id, error: toError(e) }),
    );
    try {
      await this.publish(task_id, body, runAt, opts.trace);
    } catch (e) {
      await indexed;
      // Refused, or timed out: the broker may have stored it anyway. Either way the client may only
      // hear 503 if the task can never run: a tombstone makes a late message a no-op.
      let abandoned: boolean | undefined;
      try {
        abandoned = await this.store.abandon(task_id);
      } catch {
        abandoned = undefined;
      }
      if (abandoned === false) {
        // A worker claimed it already: the message did get through. Accepted.
        this.log.info("send reported a failure, but a worker already has the task: accepted", { task_id });
        await this.store.markSent(task_id).catch(() => {});
        return accepted;
      }
      if (abandoned === undefined) this.#abandonLater(task_id);
      this.log.warn("task not accepted: RocketMQ refused it or did not answer", { task_id, error: toError(e) });
      throw new UnavailableError("rocketmq", retry, { cause: e });
    }
    await this.store.markSent(task_id).catch((e) => {
      this.log.warn("send confirmed but not recorded; retrying in the background", { task_id, error: toError(e) });
      this.#markLater(task_id);
    });
    await indexed;
    return accepted;
  }

  /**
   * Re-queues a task that failed for good and publishes its request message (an operator's retry,
   * lib/ops/retry.ts). If the publish fails, the task stays queued with its outbox hint: the API's
   * outbox sweeper sends it. Throws only when Redis fails.
   */
  async requeue(id: string, body?: string, userId?: string): Promise<Requeue & { published?: boolean }> {
    const r = await this.store.requeue(id, body, userId);
    if (r.kind !== "requeued") return r;
    try {
      await this.publish(id, Buffer.from(r.body, "utf8"));
    } catch (e) {
      // Its hint was written now, which the sweep would leave alone for OUTBOX_SWEEP_AGE_MS: backdated.
      await this.store.backdateOutbox(id, Math.max(0, this.cfg.OUTBOX_SWEEP_AGE_MS - REQUEUE_SWEEP_MS)).catch(() => {});
      this.log.warn("re-queued task not published; the outbox sweeper will send it", { task_id: id, error: toError(e) });
      return { ...r, published: false };
    }
    await this.store.markSent(id).catch(() => {});
    this.log.info("task re-queued by an operator", { task_id: id });
    return { ...r, published: true };
  }

  /** Retries the tombstone of a task the client was told was not accepted, until Redis answers. */
  #abandonLater(id: string) {
    if (this.#abandoning.size >= MAX_PENDING_ABANDONS) {
      this.log.error("too many tombstones pending; one more task told 503 may run if its create landed", { task_id: id });
      return;
    }
    this.#abandoning.set(id, Date.now());
    this.journal?.add(id);
    this.#startRetryTimer();
  }

  /**
   * Retries the `sent` mark of a task answered 202, until Redis answers. Unmarked, the task looks
   * unsent: were it still untouched (delayed, parked, behind a backlog) when a repeat of its
   * Idempotency-Key finds the key stale, the repeat would make it a tombstone (abandon.lua) and its
   * 202 would name a task that never runs; and the outbox would send it a second time.
   */
  #markLater(id: string) {
    if (this.#unmarked.size >= MAX_PENDING_MARKS) return;
    this.#unmarked.set(id, Date.now());
    this.#startRetryTimer();
  }

  #startRetryTimer() {
    this.#retryTimer ??= setInterval(() => void this.#retryPending(), 1_000);
    this.#retryTimer.unref?.();
  }

  /**
   * At start-up, before the first outbox sweep: the tombstones this API's last process left pending
   * in its journal (it died before Redis took them) are pending again here, so the sweep skips those
   * tasks, and are written now if Redis answers (else by the background retry). Returns how many.
   */
  async recoverTombstones(): Promise<number> {
    const ids = this.journal?.recover() ?? [];
    if (ids.length === 0) return 0;
    for (const id of ids) this.#abandoning.set(id, Date.now());
    this.log.warn("tombstones left pending by this API's last process: writing them", { count: ids.length, task_ids: ids.slice(0, 100) });
    this.#startRetryTimer();
    await this.#retryPending();
    return ids.length;
  }

  #retrying = false;
  async #retryPending() {
    if (this.#retrying) return; // the previous tick is still going through a long list
    this.#retrying = true;
    try {
      await this.#retryAbandonsOnce();
      await this.#retryMarksOnce();
      if (this.#abandoning.size === 0 && this.#unmarked.size === 0) {
        clearInterval(this.#retryTimer);
        this.#retryTimer = undefined;
      }
    } finally {
      this.#retrying = false;
    }
  }

  async #retryAbandonsOnce() {
    const all = await this.#passOver(this.#abandoning, (id) => this.#writeTombstone(id), (id) => {
      // Given up here and in the journal alike (which mirrors what is pending in memory).
      this.log.error("tombstone of a task told 503 not written; if its create landed, the outbox may run it", { task_id: id });
      this.journal?.done(id);
    });
    if (all && this.#abandoning.size === 0) this.journal?.clear();
  }

  async #retryMarksOnce() {
    await this.#passOver(this.#unmarked, (id) => this.store.markSent(id), (id) =>
      this.log.error("send of a task answered 202 never recorded; the outbox may send it twice", { task_id: id }));
  }

  /**
   * One pass over pending writes (id -> since when): each written in turn and dropped, the pass
   * stopping at Redis's first failure (false: Redis still away, the next tick tries again). A write
   * pending for longer than ABANDON_RETRY_MS is given up (`gaveUp`) and dropped.
   */
  async #passOver(pending: Map<string, number>, write: (id: string) => Promise<unknown>, gaveUp: (id: string) => void): Promise<boolean> {
    for (const [id, since] of pending) {
      try {
        await write(id);
        pending.delete(id);
      } catch {
        if (Date.now() - since > ABANDON_RETRY_MS) {
          gaveUp(id);
          pending.delete(id);
        }
        return false;
      }
    }
    return true;
  }

  /** A pending tombstone: written, or the task was claimed first (logged). Throws when Redis fails. */
  async #writeTombstone(id: string) {
    if (!(await this.store.abandon(id)))
      this.log.error("a task told 503 was claimed before its tombstone landed: it may run", { task_id: id });
    this.#abandoning.delete(id);
    this.journal?.done(id);
  }

  /** Tombstones not yet confirmed by Redis (for shutdown logs and tests). */
  get pendingAbandons(): number {
    return this.#abandoning.size;
  }

  /** Whether the tombstone of a task told 503 is still to be written (its Idempotency-Key is kept till then). */
  tombstonePending(id: string): boolean {
    return this.#abandoning.has(id);
  }

  /**
   * At shutdown, once no request can add one: a last try at each pending tombstone (and at each
   * pending `sent` mark), then the timer stops. What Redis does not take now stays in the journal
   * for this API's next start; without a journal it is lost with the process (the outbox may send
   * such a task if its create landed). Both are logged with the ids (the first 100).
   */
  async settlePending(): Promise<void> {
    clearInterval(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#retryAbandonsOnce(); // the background pass, once more: it stops at Redis's first failure
    // Sends answered 202 and still unmarked: only a duplicate send by the outbox is at stake now.
    await this.#retryMarksOnce();
    if (this.#unmarked.size > 0)
      this.log.warn("sends answered 202 not recorded before shutdown; the outbox may send them twice", { count: this.#unmarked.size, task_ids: [...this.#unmarked.keys()].slice(0, 100) });
    this.#unmarked.clear();
    if (this.#abandoning.size > 0) {
      const ids = { count: this.#abandoning.size, task_ids: [...this.#abandoning.keys()].slice(0, 100) };
      if (this.journal)
        this.log.warn("tombstones of tasks told 503 not written before shutdown: kept in the journal, written at the next start", { ...ids, journal: this.journal.path });
      else this.log.error("tombstones of tasks told 503 not written before shutdown; if their creates landed, the outbox may run them", ids);
    }
    this.#abandoning.clear();
  }

  /**
   * Re-publishes tasks whose outbox hint is older than `olderThanMs` and which still say unsent
   * (their API process died mid-submit). Workers' claims make a second copy harmless. Returns how many.
   * No client was told 202 for a task whose message may be missing (202 waits for the send's
   * confirmation; a failed markSent leaves the hint of a message already sent), and some were
   * told 503 by an API that still retries their tombstones, maybe cut off from Redis: so the default
   * age, OUTBOX_SWEEP_AGE_MS, outlasts those retries (ABANDON_RETRY_MS), and another API's sweep
   * leaves them to their tombstones.
   */
  async sweepOutbox(olderThanMs = this.cfg.OUTBOX_SWEEP_AGE_MS): Promise<number> {
    if (!(await this.store.lockOutbox())) return 0;
    let n = 0;
    for (const { id, body, runAt } of await this.store.dueOutbox(olderThanMs)) {
      if (this.#abandoning.has(id)) continue; // told 503: its tombstone is on its way
      try {
        // A delayed task keeps its delivery time (to the request topic once it is due).
        await this.publish(id, Buffer.from(body, "utf8"), runAt);
        await this.store.markSent(id);
        n++;
        countOutboxResent();
        this.log.info("outbox: task re-published", { task_id: id });
      } catch (e) {
        this.log.warn("outbox: re-publish failed; will try again", { task_id: id, error: toError(e) });
        break;
      }
    }
    return n;
  }

  /**
   * Re-publishes the stalled tasks due now (each at most once per STALLED_AFTER_MS, whichever worker
   * asks); the claim makes a copy that was not needed after all (the old message was only late)
   * harmless. Returns how many were sent. Never throws.
   */
  async republishStalled(): Promise<number> {
    let due: { id: string; body: string }[];
    try {
      due = await this.store.stalled();
    } catch (e) {
      this.log.warn("stalled tasks: Redis unavailable; will check again", { error: toError(e) });
      return 0;
    }
    let n = 0;
    for (const { id, body } of due) {
      try {
        await this.publish(id, Buffer.from(body, "utf8"));
        n++;
        countStalledRepublished();
        this.log.warn("stalled task re-published", {
          task_id: id,
          reason: `no claim for ${this.cfg.STALLED_AFTER_MS} ms after its lease or retry delay ended`,
        });
      } catch (e) {
        // The entry's next check was already moved on (reap.lua): it is tried again one period later.
        this.log.warn("stalled task not re-published; will try again", { task_id: id, error: toError(e) });
      }
    }
    return n;
  }
}

/** How often workers look for stalled tasks: a stalled task waits at most about a quarter more. */
export const stalledCheckEveryMs = (cfg: Config) => Math.min(15_000, Math.max(1_000, Math.floor(cfg.STALLED_AFTER_MS / 4)));

/** A start-up warning when an outbox sweep may send a task another API told 503 (OUTBOX_SWEEP_AGE_MS too short). */
export function refusedMayRun(cfg: Pick<Config, "OUTBOX_SWEEP_AGE_MS">): string | undefined {
  if (cfg.OUTBOX_SWEEP_AGE_MS > ABANDON_RETRY_MS) return undefined;
  return `OUTBOX_SWEEP_AGE_MS (${cfg.OUTBOX_SWEEP_AGE_MS} ms) is not above the ${ABANDON_RETRY_MS / 60_000} min an API retries the ` +
    `tombstone of a task it told 503: this API's outbox sweep may send such a task of another API (cut off from Redis, or dead) and run it`;
}
