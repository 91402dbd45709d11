// Delayed tasks, the worker's side. The API sends a delayed task's request message to the delay topic
// (lib/provision.ts delayTopic, message type DELAY) as a RocketMQ timer message due at its run_at; the
// broker's timer makes it visible there when due, and this loop (group `<MQ_GROUP_AGENT>-delay`)
// forwards it, unchanged, to the request topic, where any worker (ours, or the original's in a
// mixed fleet) claims it as it claims every task: `scheduled` turns `running`.
// The API gives the timer a time one slot before run_at (TIMER_LEAD_MS: the broker rounds a delivery
// time down to its 1 s slot, HookUtils.transformTimerMessage in RocketMQ 5.3.3, and hands the slot
// out once it has passed), so a message arrives up to about a second early. It is held until its
// run_at (by this host's clock), then sent on.
// Further from due than HOLD_MAX_MS (only if the message came without a timestamp, or a clock
// jumped), it is hidden until due instead, which costs a delivery and a few seconds of lateness.
import { toError } from "../errors.ts";
import type { MessageView } from "../mq.ts";
import { REQUEST_TAG } from "../model.ts";
import { traceOf } from "../observe/messaging.ts";
import { sleep } from "../time.ts";
import { DependencyError, MIN_HIDE_MS, parseRequest, poison, type Outcome, type WorkerContext } from "./handle.ts";

/** Longest wait held in hand: a few timer slots. */
export const HOLD_MAX_MS = 5_000;
/** Longest hide (RocketMQ allows 12 h): the message is looked at again by then. */
const MAX_HIDE_MS = 2 * 60 * 60 * 1000;
/** Messages the forwarding loop holds at once: held ones wait, they use no CPU. */
export const DELAY_LOOP_CONCURRENCY = 256;

export async function forwardDue(m: MessageView, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx, shutdown);
  const msg = parsed.msg;
  const due = msg.run_at ? Date.parse(msg.run_at) : NaN;
  const wait = Number.isFinite(due) ? due - Date.now() : 0;
  if (wait > HOLD_MAX_MS) {
    ctx.log.warn("delayed task arrived early; hidden until due", { task_id: msg.task_id, early_ms: wait });
    await ctx.settler.hide(m, Math.min(wait, MAX_HIDE_MS));
    return "busy";
  }
  if (wait > 0) {
    try {
      await sleep(wait, shutdown);
    } catch {
      await ctx.settler.hide(m, MIN_HIDE_MS).catch(() => {}); // shutting down: back to the broker
      return "handed_back";
    }
  }
  try {
    await ctx.publisher.send({ topic: ctx.cfg.MQ_TOPIC_REQUEST, tag: REQUEST_TAG, key: msg.task_id, body: m.body, traceParent: traceOf(m) });
  } catch (e) {
    throw new DependencyError("rocketmq", `delayed task not forwarded: ${toError(e).message}`, { cause: e });
  }
  await ctx.settler.ack(m);
  ctx.log.debug("delayed task due: forwarded to the request topic", { task_id: msg.task_id, held_ms: Math.max(0, wait), late_ms: Math.max(0, -wait) });
  return "forwarded";
}
