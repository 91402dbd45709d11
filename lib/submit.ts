// Getting a task's request message to RocketMQ, and again when it went missing.
// Accepting: the status goes to Redis with an outbox entry, the message to RocketMQ, then the outbox
// entry is removed. If RocketMQ refuses, the task is removed again (no task looks queued that was
// never sent); if this process dies between the two, the outbox sweeper (in the API) re-publishes it.
// Stalled tasks: a task is watched while it runs or waits for a retry (lib/lua/reap.lua). If its
// worker died and RocketMQ no longer has its message (an unflushed broker crash, a message deleted by
// hand, a group reset), nothing would run it again: workers re-publish it (republishStalled).
import type { Config } from "./config.ts";
import { UnavailableError, toError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { ACTION, encodeJson, REQUEST_TAG, type RequestMessage, type TaskInput } from "./model.ts";
import type { Publisher } from "./mq.ts";
import type { TaskStore } from "./store.ts";

export class TaskService {
  constructor(
    private readonly cfg: Config,
    private readonly store: TaskStore,
    private readonly publisher: Publisher,
    private readonly log: Logger,
  ) {}

  private publish(id: string, body: Buffer) {
    return this.publisher.send({ topic: this.cfg.MQ_TOPIC_REQUEST, tag: REQUEST_TAG, key: id, body });
  }

  /** `tenant`: the API key's tenant (AUTH_MODE=keys), kept in the task and its message. */
  async submit(input: TaskInput, tenant?: string): Promise<{ task_id: string; status: "queued" }> {
    const task_id = crypto.randomUUID();
    const message: RequestMessage = { task_id, user_id: input.user_id, payload: input.content, action: ACTION, ...(tenant ? { tenant } : {}) };
    const body = encodeJson(message);
    const retry = this.cfg.RETRY_AFTER_SECONDS;
    try {
      await this.store.create(task_id, input.user_id, body.toString("utf8"));
      // The owner, for GET (lib/http/auth.ts); before the send, so no worker sees the task without it.
      // Not in create's script: were this process to die in between, the client never got the id.
      if (tenant) await this.store.redis.hSet(this.store.keys.task(task_id), "tenant", tenant);
    } catch (e) {
      this.log.warn("task not accepted: Redis unavailable", { error: toError(e) });
      throw new UnavailableError("redis", retry, { cause: e });
    }
    try {
      await this.publish(task_id, body);
    } catch (e) {
      this.log.warn("task not accepted: RocketMQ refused it", { task_id, error: toError(e) });
      await this.store.unpublish(task_id).catch((e2) =>
        // Redis went away too: the outbox entry stays, and the sweeper publishes it later.
        this.log.warn("could not remove the unsent task; the outbox will retry it", { task_id, error: toError(e2) }),
      );
      throw new UnavailableError("rocketmq", retry, { cause: e });
    }
    await this.store.markPublished(task_id).catch((e) =>
      this.log.warn("publish confirmed but outbox entry not removed; it may be sent twice", { task_id, error: toError(e) }),
    );
    return { task_id, status: "queued" };
  }

  /**
   * Re-publishes outbox entries older than `olderThanMs` (their API process died mid-submit, or Redis
   * failed right after the send). Workers' claims make a second copy harmless. Returns how many.
   */
  async sweepOutbox(olderThanMs = 30_000): Promise<number> {
    const lock = await this.store.redis.set(this.store.keys.outboxLock, "1", { NX: true, PX: 10_000 });
    if (lock !== "OK") return 0;
    let n = 0;
    for (const { id, body } of await this.store.dueOutbox(olderThanMs)) {
      try {
        await this.publish(id, Buffer.from(body, "utf8"));
        await this.store.markPublished(id);
        n++;
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
