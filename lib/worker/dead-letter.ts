// Messages RocketMQ gave up on: after retryMaxTimes + 1 deliveries the proxy moves a message to
// %DLQ%<group> instead of handing it out again (in practice: Redis or the result topic unavailable
// for a long time). Workers read that topic too, so such a task ends `failed` with the reason and a
// failure result, instead of waiting forever. A copy whose task still runs under a live lease, or is
// already finished, is only acked.
// The failure result is published as a run's is (publishHeld: retried with the message in hand) and
// the message acked only after it: a result topic that fails for a moment does not lose it. Not
// covered yet (docs/reliability.md, open problems): a shutdown during such an outage hands the
// message back, and its next delivery finds the task finished, so that result is not published.
import type { MessageView } from "../mq.ts";
import { deadLetterTopic } from "../provision.ts";
import { handBackUnpublished, handleMessage, parseRequest, poison, publishHeld, resultMessage, type Outcome, type WorkerContext } from "./handle.ts";

export async function handleDeadLetter(m: MessageView, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx, shutdown);
  const msg = parsed.msg;
  const log = ctx.log.child({ task_id: msg.task_id, message_id: m.messageId });
  const reason = `RocketMQ dead-lettered the task's message (${deadLetterTopic(ctx.cfg.MQ_GROUP_AGENT)}) after ${ctx.cfg.MQ_RETRY_MAX_TIMES + 1} deliveries`;
  const w = await ctx.store.deadLettered(msg.task_id, reason, msg.user_id, msg.tenant ?? "");
  if (w === "canceled") {
    // Its cancellation was asked (202): recorded canceled, its canceled result not yet published.
    // This copy claims it now, which publishes that result and never runs the agent (the status is
    // final), instead of leaving it to the stalled-task re-send minutes later.
    log.info("dead-lettered copy of a task whose cancellation was asked: recorded canceled, publishing");
    return handleMessage(m, ctx, shutdown);
  }
  if (w === "written") {
    const attempts = (await ctx.store.get(msg.task_id))?.attempts ?? 0;
    // Set aside before the publish, as poison() does: a message handed back at shutdown comes back to
    // a finished task and is skipped, so an entry written after the publish would never be written.
    await ctx.store.deadLetter({ reason, message_id: m.messageId, task_id: msg.task_id, body: m.body.toString("utf8").slice(0, ctx.cfg.DEAD_LETTER_BODY_CHARS), at: new Date().toISOString() });
    log.warn("task failed: its message was dead-lettered", { reason });
    if (!(await publishHeld(m, ctx, resultMessage(msg, attempts, null, reason), shutdown, log))) return handBackUnpublished(m, ctx, log);
  } else {
    log.info("dead-lettered copy of a task that is finished or running elsewhere: acked", { outcome: w });
  }
  await ctx.settler.ack(m);
  return w === "written" ? "failed" : "skipped";
}
