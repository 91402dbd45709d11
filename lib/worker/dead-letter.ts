// Messages RocketMQ gave up on: after retryMaxTimes + 1 deliveries the proxy moves a message to
// %DLQ%<group> instead of handing it out again (in practice: Redis or the result topic unavailable
// for a long time). Workers read that topic too, so such a task ends `failed` with the reason and a
// failure result, instead of waiting forever. A copy whose task still runs under a live lease, or is
// already finished, is only acked.
import { toError } from "../errors.ts";
import type { MessageView } from "../mq.ts";
import { deadLetterTopic } from "../provision.ts";
import { parseRequest, poison, publishResult, resultMessage, type Outcome, type WorkerContext } from "./handle.ts";

export async function handleDeadLetter(m: MessageView, ctx: WorkerContext): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx);
  const msg = parsed.msg;
  const log = ctx.log.child({ task_id: msg.task_id, message_id: m.messageId });
  const reason = `RocketMQ dead-lettered the task's message (${deadLetterTopic(ctx.cfg.MQ_GROUP_AGENT)}) after ${ctx.cfg.MQ_RETRY_MAX_TIMES + 1} deliveries`;
  const w = await ctx.store.deadLettered(msg.task_id, reason, msg.user_id);
  if (w === "written") {
    const attempts = (await ctx.store.get(msg.task_id))?.attempts ?? 0;
    await publishResult(ctx, m, resultMessage(msg, attempts, null, reason)).catch((e) =>
      log.warn("failure result not published", { error: toError(e) }),
    );
    await ctx.store.deadLetter({ reason, message_id: m.messageId, task_id: msg.task_id, body: m.body.toString("utf8").slice(0, ctx.cfg.DEAD_LETTER_BODY_CHARS), at: new Date().toISOString() });
    log.warn("task failed: its message was dead-lettered", { reason });
  } else {
    log.info("dead-lettered copy of a task that is finished or running elsewhere: acked", { outcome: w });
  }
  await ctx.settler.ack(m);
  return w === "written" ? "failed" : "skipped";
}
