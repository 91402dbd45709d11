// Stalled tasks: a task is watched while it runs or waits for a retry (lib/lua/reap.lua). If its
// worker died and RocketMQ no longer has its message (an unflushed broker crash, a message deleted by
// hand, a group reset), nothing would ever run it again and it would look `running` or `queued`
// forever. Every worker checks now and then and publishes such a task's request message again; the
// claim makes a copy that was not needed after all (the old message was only late) harmless.
import type { Config } from "../config.ts";
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { REQUEST_TAG } from "../model.ts";
import type { Publisher } from "../mq.ts";
import type { TaskStore } from "../store.ts";

/** Re-publishes the stalled tasks due now; returns how many were sent. Never throws. */
export async function republishStalled(cfg: Config, store: TaskStore, publisher: Publisher, log: Logger): Promise<number> {
  let due: { id: string; body: string }[];
  try {
    due = await store.stalled();
  } catch (e) {
    log.warn("stalled tasks: Redis unavailable; will check again", { error: toError(e) });
    return 0;
  }
  let n = 0;
  for (const { id, body } of due) {
    try {
      await publisher.send({ topic: cfg.MQ_TOPIC_REQUEST, tag: REQUEST_TAG, key: id, body: Buffer.from(body, "utf8") });
      n++;
      log.warn("stalled task re-published", { task_id: id, reason: `no claim for ${cfg.STALLED_AFTER_MS} ms after its lease or retry delay ended` });
    } catch (e) {
      // The entry's next check was already moved on (reap.lua): it is tried again one period later.
      log.warn("stalled task not re-published; will try again", { task_id: id, error: toError(e) });
    }
  }
  return n;
}

/** How often to look: often enough that a stalled task waits at most about a quarter more. */
export const stalledCheckEveryMs = (cfg: Config) => Math.min(15_000, Math.max(1_000, Math.floor(cfg.STALLED_AFTER_MS / 4)));
