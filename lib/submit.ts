// Accepting a task: the status goes to Redis with an outbox entry, the message to RocketMQ, then the
// outbox entry is removed. If RocketMQ refuses, the task is removed again (no task looks queued that
// was never sent); if this process dies between the two, the outbox sweeper re-publishes it.
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

  async submit(input: TaskInput): Promise<{ task_id: string; status: "queued" }> {
    const task_id = crypto.randomUUID();
    const message: RequestMessage = { task_id, user_id: input.user_id, payload: input.content, action: ACTION };
    const body = encodeJson(message);
    const retry = this.cfg.RETRY_AFTER_SECONDS;
    try {
      await this.store.create(task_id, input.user_id, body.toString("utf8"));
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
}
