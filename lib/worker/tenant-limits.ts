// Tenant concurrency around the message handler (lib/tenancy/fair-share.ts does the counting):
// admission before the run (a tenant at its limit has the task parked and the message acked), and
// the slot's release after it, whatever the outcome, unless another copy of the task runs elsewhere.
import { toError } from "../errors.ts";
import type { MessageView } from "../mq.ts";
import type { TenantSlots } from "../tenancy/fair-share.ts";
import { parseRequest, type Outcome, type WorkerContext } from "./handle.ts";

/** task id and tenant of a request message, without validating the rest (the handler does). */
function peek(body: Buffer): { taskId: string; tenant: string } | undefined {
  try {
    const j = JSON.parse(body.toString("utf8")) as { task_id?: unknown; tenant?: unknown };
    if (typeof j.task_id === "string" && typeof j.tenant === "string" && j.tenant) return { taskId: j.task_id, tenant: j.tenant };
  } catch {
    /* not JSON: the handler sets it aside */
  }
  return undefined;
}

/**
 * Makes sure the task's record holds its request body before the message is acked for parking, and
 * marks it parked (lib/lua/keep.lua: the stalled check leaves it to its release). A missing record is
 * rebuilt from the message, as a claim adopts an unknown task (claim.lua "adopt"). create.lua writes
 * only when no record (or tombstone) exists, so a finished task is never revived.
 * False: the message is not a valid request (the handler sets it aside). Throws when Redis fails:
 * the message is then not acked, and comes back.
 */
async function keepsRecord(m: MessageView, ctx: WorkerContext, taskId: string): Promise<boolean> {
  if ((await ctx.store.keepWaiting(taskId, true)) !== "gone") return true;
  const p = parseRequest(m.body);
  if (!p.ok || p.msg.task_id !== taskId) return false;
  if (await ctx.store.create(taskId, p.msg.user_id, m.body.toString("utf8"), p.msg.tenant ?? "")) {
    // Its message is this one: nothing for the outbox sweeper to send.
    await ctx.store.markSent(taskId);
    await ctx.store.keepWaiting(taskId, true);
    ctx.log.warn("parked task had no record in Redis: rebuilt from its message", { task_id: taskId });
  }
  return true;
}

type Handler = (m: MessageView, ctx: WorkerContext, shutdown: AbortSignal) => Promise<Outcome>;

/** Wraps the message handler with tenant admission (before) and release (after). */
export function withTenantLimits(inner: Handler, slots: TenantSlots): Handler {
  return async (m, ctx, shutdown) => {
    const who = peek(m.body);
    if (!who) return inner(m, ctx, shutdown);
    const admission = await slots.admit(who.tenant, who.taskId);
    if (admission === "unlimited") return inner(m, ctx, shutdown);
    if (admission === "parked") {
      // The release re-publishes a parked task from its record (fair-share.ts): acked with no record
      // behind it (Redis lost its last writes in a crash, or the record expired while the message
      // waited in a backlog), the task would be skipped for good although its client got 202.
      if (!(await keepsRecord(m, ctx, who.taskId))) return inner(m, ctx, shutdown); // not valid: set aside there
      await ctx.settler.ack(m);
      ctx.log.info("task parked: its tenant is at its concurrency limit", { task_id: who.taskId, tenant: who.tenant });
      return "parked";
    }
    let outcome: Outcome | undefined;
    try {
      outcome = await inner(m, ctx, shutdown);
      return outcome;
    } finally {
      // Keep the slot when another copy of the task runs elsewhere: its worker releases it.
      const runsElsewhere = outcome === "lost" || (outcome === "busy" && admission === "already");
      if (!runsElsewhere)
        await slots.release(who.tenant, who.taskId).catch((e) =>
          ctx.log.warn("tenant slot not released; the reaper frees it", { task_id: who.taskId, tenant: who.tenant, error: toError(e) }),
        );
    }
  };
}
