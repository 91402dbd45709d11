// Cancelling a task (POST /tasks/:id/cancel). lib/lua/cancel.lua decides, atomically:
// - a task waiting to run (queued, scheduled, waiting for a retry or a tenant slot) is canceled at
//   once; this API publishes its canceled result message, and its request message, when it arrives,
//   is acked and skipped by the claim. If that publish fails, the claim of the task's message (or the
//   stalled-task re-send) publishes it instead: every cancellation publishes one.
// - a running task is marked; its id goes out on the cancel channel, and the worker running it aborts
//   the agent through its AbortSignal, records it canceled and publishes the result itself (a lost
//   notice: its heartbeat sees the mark; a dead worker: the next claim does).
import type { Config } from "../config.ts";
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { encodeJson, RESULT_TAG, type ResultMessage, type TaskView } from "../model.ts";
import type { Publisher } from "../mq.ts";
import type { TaskStore } from "../store.ts";
import { announceCancel } from "../state/cancel-channel.ts";

/** How long a task canceled here is held for this process to publish its result (a send is at most ~6.5 s). */
const HOLD_MS = 15_000;

export type CancelAnswer =
  | { kind: "accepted"; view: TaskView }
  | { kind: "not_found" }
  | { kind: "finished"; status: string };

export class CancelService {
  constructor(
    private readonly cfg: Config,
    private readonly store: TaskStore,
    private readonly publisher: Publisher,
    private readonly log: Logger,
  ) {}

  /** Throws when Redis fails (the caller answers 503); a failed publish or notice is covered, not thrown. */
  async cancel(id: string): Promise<CancelAnswer> {
    const token = crypto.randomUUID();
    const r = await this.store.cancel(id, token, HOLD_MS);
    const log = this.log.child({ task_id: id });
    if (r.kind === "not_found") return r;
    if (r.kind === "finished") return r;
    if (r.kind === "requested") {
      await announceCancel(this.store.redis, this.store.keys.cancelChannel, id).catch((e) =>
        log.warn("cancel notice not published; the task's worker cancels it at its next heartbeat", { error: toError(e) }),
      );
      log.info("cancellation of a running task asked");
    } else {
      await this.#publishCanceled(id, token, r.attempts, r.userId);
      log.info("task canceled before it ran");
    }
    const view = await this.store.get(id);
    // Gone in between (expired, or an operator deleted it): nothing left to cancel.
    return view ? { kind: "accepted", view } : { kind: "not_found" };
  }

  async #publishCanceled(id: string, token: string, attempts: number, userId: string) {
    const message: ResultMessage = { task_id: id, user_id: userId, result: null, status: "canceled", attempts, finished_at: new Date().toISOString() };
    try {
      await this.publisher.send({ topic: this.cfg.MQ_TOPIC_RESULT, tag: RESULT_TAG, key: id, body: encodeJson(message) });
    } catch (e) {
      this.log.warn("canceled result not published here; the task's next claim publishes it", { task_id: id, error: toError(e) });
      await this.store.release(id, token, 0).catch(() => {}); // else the hold simply runs out
      return;
    }
    await this.store.published(id, token).catch((e) =>
      this.log.warn("canceled result published but not recorded; it may be published twice", { task_id: id, error: toError(e) }),
    );
  }
}
