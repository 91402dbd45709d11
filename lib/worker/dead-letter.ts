// Messages RocketMQ gave up on: after retryMaxTimes + 1 deliveries the proxy moves a message to
// %DLQ%<group> instead of handing it out again (in practice: Redis or the result topic unavailable
// for a long time). Workers read that topic too, so such a task ends `failed` with the reason and a
// failure result, instead of waiting forever. A copy whose task still runs under a live lease, or is
// already finished, is only acked.
// The failure is recorded as an outcome still to publish (finish.lua "dead"), and the dead letter is
// then handled as a request message: its claim publishes that outcome and never runs the agent, the
// publish retried with the message in hand, and at shutdown the message handed back with the outcome
// kept, so its next delivery publishes it.
import type { MessageView } from "../mq.ts";
import { deadLetterTopic } from "../provision.ts";
import { handleMessage, parseRequest, poison, type Outcome, type WorkerContext } from "./handle.ts";

export async function handleDeadLetter(m: MessageView, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx, shutdown);
  const msg = parsed.msg;
  const log = ctx.log.child({ task_id: msg.task_id, message_id: m.messageId });
  const reason = `RocketMQ dead-lettered the task's message (${deadLetterTopic(ctx.cfg.MQ_GROUP_AGENT)}) after ${ctx.cfg.MQ_RETRY_MAX_TIMES + 1} deliveries`;
  const w = await ctx.store.deadLettered(msg.task_id, reason, msg.user_id, msg.tenant ?? "");
  if (w === "written") {
    // Set aside before the publish, as poison() does: written once, by the copy that failed the task.
    await ctx.store.deadLetter({ reason, message_id: m.messageId, task_id: msg.task_id, body: m.body.toString("utf8").slice(0, ctx.cfg.DEAD_LETTER_BODY_CHARS), at: new Date().toISOString() });
    log.warn("task failed: its message was dead-lettered", { reason });
  } else if (w === "canceled") {
    // Its cancellation was asked (202): recorded canceled, not failed.
    log.info("dead-lettered copy of a task whose cancellation was asked: recorded canceled, publishing");
  } else if (w === "pending") {
    log.info("dead-lettered copy of a task whose result is recorded but not published: publishing");
  }
  // Claimed to publish the recorded outcome now (the status is final: the agent never runs), instead
  // of leaving it to the stalled-task re-send minutes later.
  if (w === "written" || w === "canceled" || w === "pending") return handleMessage(m, ctx, shutdown);
  log.info("dead-lettered copy of a task that is finished or running elsewhere: acked", { outcome: w });
  await ctx.settler.ack(m);
  return "skipped";
}
