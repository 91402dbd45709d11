// What a worker does with one received request message: validate, claim, run the agent under a
// heartbeat, publish the result, record it, settle the message. Every path ends with the message
// acked, or hidden again for a known reason (retry backoff, another live runner, handed back).
import { Value } from "@sinclair/typebox/value";
import type { Agent } from "../agent/index.ts";
import type { Config } from "../config.ts";
import { PermanentAgentError, RetryableAgentError, toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MessageView, Publisher } from "../mq.ts";
import { encodeJson, isTaskId, RequestMessage, RESULT_TAG, type AgentResult, type ResultMessage } from "../model.ts";
import type { TaskStore } from "../store.ts";

/** How the worker settles a message with the broker. */
export interface Settler {
  ack(m: MessageView): Promise<void>;
  /** Hide the message again for `ms`; it comes back with its delivery attempt + 1. */
  hide(m: MessageView, ms: number): Promise<void>;
}

export interface WorkerContext {
  cfg: Config;
  store: TaskStore;
  publisher: Publisher;
  settler: Settler;
  agent: Agent;
  log: Logger;
}

export type Outcome = "done" | "failed" | "retry" | "skipped" | "busy" | "poison" | "handed_back" | "lost" | "parked";

/**
 * How long a handed-back message stays hidden. The proxy accepts 1 s for changeInvisibleDuration
 * (receive itself wants >= 10 s); the broker's revive scan then returns it within about 5 s (measured).
 */
export const MIN_HIDE_MS = 1_000;
const MAX_HIDE_MS = 2 * 60 * 60 * 1000;

/** Reasons a run's AbortSignal carries, so the handler knows why it stopped. */
export class ShutdownAbort extends Error {
  override name = "ShutdownAbort";
}
class LeaseLost extends Error {
  override name = "LeaseLost";
}
class TaskTimeout extends Error {
  override name = "TaskTimeout";
}

export function retryDelayMs(cfg: Config, attempt: number, retryAfterMs?: number): number {
  const backoff = cfg.RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1);
  return Math.min(MAX_HIDE_MS, Math.max(MIN_HIDE_MS, backoff, retryAfterMs ?? 0));
}

type Parsed = { ok: true; msg: RequestMessage } | { ok: false; reason: string; taskId?: string; userId?: string };

export function parseRequest(body: Buffer): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    return { ok: false, reason: "body is not JSON" };
  }
  if (Value.Check(RequestMessage, json)) return { ok: true, msg: json };
  const first = [...Value.Errors(RequestMessage, json)][0];
  const obj = (json && typeof json === "object" ? json : {}) as Record<string, unknown>;
  const taskId = typeof obj.task_id === "string" && isTaskId(obj.task_id) ? obj.task_id : undefined;
  const userId = typeof obj.user_id === "string" ? obj.user_id : undefined;
  return { ok: false, reason: `invalid request message: ${first?.path || "/"} ${first?.message}`, taskId, userId };
}

export async function publishResult(ctx: WorkerContext, r: ResultMessage): Promise<void> {
  await ctx.publisher.send({ topic: ctx.cfg.MQ_TOPIC_RESULT, tag: RESULT_TAG, key: r.task_id, body: encodeJson(r) });
}

export function resultMessage(msg: { task_id: string; user_id: string }, attempts: number, result: AgentResult | null, error?: string): ResultMessage {
  return {
    task_id: msg.task_id,
    user_id: msg.user_id,
    result,
    status: result ? "done" : "failed",
    ...(error !== undefined ? { error } : {}),
    attempts,
    finished_at: new Date().toISOString(),
  };
}

/** A message that can never be processed: set aside with its reason, recorded as failed if it names a task, acked. */
export async function poison(m: MessageView, p: Extract<Parsed, { ok: false }>, ctx: WorkerContext): Promise<Outcome> {
  const log = ctx.log.child({ message_id: m.messageId, ...(p.taskId ? { task_id: p.taskId } : {}) });
  log.warn("message set aside: cannot be processed", { reason: p.reason });
  await ctx.store.deadLetter({
    reason: p.reason,
    message_id: m.messageId,
    task_id: p.taskId,
    body: m.body.toString("utf8").slice(0, ctx.cfg.DEAD_LETTER_BODY_CHARS),
    at: new Date().toISOString(),
  });
  if (p.taskId) {
    const error = `message could not be processed: ${p.reason}`;
    if ((await ctx.store.forceFail(p.taskId, error, p.userId ?? "")) === "written")
      await publishResult(ctx, resultMessage({ task_id: p.taskId, user_id: p.userId ?? "" }, 0, null, error)).catch((e) =>
        log.warn("failure result not published", { error: toError(e) }),
      );
  }
  await ctx.settler.ack(m);
  return "poison";
}

/**
 * Runs one message to a settled state. `shutdown` aborts the run to hand the task back.
 * Throws only when Redis or RocketMQ fail underneath; the message then comes back by itself
 * once its invisibility ends.
 */
export async function handleMessage(m: MessageView, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx);
  const msg = parsed.msg;
  const log = ctx.log.child({ task_id: msg.task_id });
  const { cfg, store, settler } = ctx;
  const token = crypto.randomUUID();
  const leaseMs = cfg.MQ_INVISIBLE_MS;

  const claim = await store.claim(msg.task_id, token, leaseMs, msg.user_id, Date.now(), m.body.toString("utf8"));
  if (claim.kind === "finished") {
    log.info("duplicate delivery of a finished task: skipped", { status: claim.status, delivery: m.deliveryAttempt });
    await settler.ack(m);
    return "skipped";
  }
  if (claim.kind === "busy") {
    // Another worker runs it now. Not acked: if that worker dies, this copy is what brings the task back.
    log.info("task is running elsewhere: message hidden until its lease ends", { lease_left_ms: claim.leaseLeftMs });
    await settler.hide(m, Math.min(MAX_HIDE_MS, Math.max(MIN_HIDE_MS, claim.leaseLeftMs + 1_000)));
    return "busy";
  }
  const attempt = claim.attempt;
  log.info("task running", { attempt, delivery: m.deliveryAttempt });

  const run = new AbortController();
  const onShutdown = () => run.abort(new ShutdownAbort("worker shutting down"));
  shutdown.addEventListener("abort", onShutdown, { once: true });
  if (shutdown.aborted) onShutdown();
  const timeout = setTimeout(() => run.abort(new TaskTimeout(`task timed out after ${cfg.TASK_TIMEOUT_MS} ms`)), cfg.TASK_TIMEOUT_MS);
  // Heartbeat: keep the message hidden and the claim alive while the agent works (minutes, maybe).
  const beat = setInterval(async () => {
    try {
      if (!(await store.heartbeat(msg.task_id, token, leaseMs))) run.abort(new LeaseLost("claim lost to another worker"));
    } catch (e) {
      log.warn("heartbeat to Redis failed", { error: toError(e) });
    }
    await settler.hide(m, cfg.MQ_INVISIBLE_MS).catch((e) => log.warn("could not extend message invisibility", { error: toError(e) }));
  }, Math.max(1_000, Math.floor(leaseMs / 3)));

  let result: AgentResult | undefined;
  let failure: Error | undefined;
  try {
    result = await ctx.agent({ task_id: msg.task_id, user_id: msg.user_id, content: msg.payload, attempt }, run.signal);
  } catch (e) {
    failure = run.signal.aborted ? toError(run.signal.reason) : toError(e);
  } finally {
    clearInterval(beat);
    clearTimeout(timeout);
    shutdown.removeEventListener("abort", onShutdown);
  }

  if (failure instanceof ShutdownAbort) {
    await store.release(msg.task_id, token);
    // Hidden for the shortest time, so another worker picks it up within seconds.
    await settler.hide(m, MIN_HIDE_MS);
    log.info("task handed back at shutdown");
    return "handed_back";
  }
  if (failure instanceof LeaseLost) {
    log.warn("task abandoned: another worker holds its claim");
    return "lost";
  }

  if (result) {
    // Result first, then `done`: a failed publish must not leave a done task without its result.
    try {
      await publishResult(ctx, resultMessage(msg, attempt, result));
    } catch (e) {
      log.warn("result not published; task goes back for another run", { error: toError(e) });
      await store.release(msg.task_id, token);
      await settler.hide(m, MIN_HIDE_MS).catch(() => {});
      return "retry";
    }
    const w = await store.complete(msg.task_id, token, result);
    if (w !== "written") {
      log.warn("result published but the claim was lost; the message settles on its next delivery", { outcome: w });
      return "lost";
    }
    await settler.ack(m);
    log.info("task done", { attempt });
    return "done";
  }

  const err = failure ?? new Error("agent returned nothing");
  const final = err instanceof PermanentAgentError || attempt >= cfg.MAX_ATTEMPTS;
  if (!final) {
    const delay = retryDelayMs(cfg, attempt, err instanceof RetryableAgentError ? err.retryAfterMs : undefined);
    await store.retry(msg.task_id, token, err.message, delay);
    await settler.hide(m, delay);
    log.warn("task attempt failed; will retry", { attempt, error: err.message, retry_in_ms: delay });
    return "retry";
  }
  const reason = `${err.name}: ${err.message}`;
  await publishResult(ctx, resultMessage(msg, attempt, null, reason));
  await store.fail(msg.task_id, token, reason);
  await settler.ack(m);
  log.warn("task failed", { attempt, error: reason });
  return "failed";
}
