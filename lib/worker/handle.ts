// What a worker does with one received request message: validate, claim, run the agent under a
// heartbeat (with self-fencing and a hard deadline), record the outcome under the claim, publish it,
// mark it finished, settle the message. Every path ends with the message acked, or hidden again for
// a known reason (retry backoff, another live runner, handed back, a publish or a run's final Redis
// write to retry), or throws a DependencyError (Redis or RocketMQ failed) for the consumer loop's breaker.
import { sleep } from "../time.ts";
import { Value } from "@sinclair/typebox/value";
import { type Agent, runClock } from "../agent/index.ts";
import type { Config } from "../config.ts";
import { PermanentAgentError, RetryableAgentError, toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MessageView, Publisher } from "../mq.ts";
import { encodeJson, isTaskId, RequestMessage, RESULT_TAG, type AgentResult, type ResultMessage, type TaskUsage } from "../model.ts";
import type { LlmCall } from "../agent/types.ts";
import { neverSent } from "../scripts.ts";
import type { Claim, FinishOutcome, TaskStore } from "../store.ts";
import type { Isolation } from "./isolation.ts";
import type { CancelWatch } from "./cancel-watch.ts";
import { progressReporter } from "./progress.ts";
import { observeAgentRun, observeClaim, observeFinish, traceOf } from "../observe/messaging.ts";

/** How the worker settles a message with the broker: one operation at a time per message. */
export interface Settler {
  ack(m: MessageView): Promise<void>;
  /**
   * Hide the message again for `ms`; it comes back with its delivery attempt + 1. With `onlyIf`, the
   * hide is skipped when it answers false at the moment it would run (after the operations queued
   * before it): a heartbeat's hide must not undo the short hide of a run that just ended.
   */
  hide(m: MessageView, ms: number, onlyIf?: () => boolean): Promise<void>;
}

export interface WorkerContext {
  /** runs a suspect alone in this process (lib/worker/isolation.ts); without it, suspects run like any task */
  isolation?: Isolation;
  cfg: Config;
  store: TaskStore;
  publisher: Publisher;
  settler: Settler;
  agent: Agent;
  log: Logger;
  /** cancellation notices (lib/worker/cancel-watch.ts); without it, a cancel reaches a run at its heartbeat */
  cancels?: CancelWatch;
  /**
   * Called once Redis has answered this message's claim (any answer; not when it threw). The consumer
   * loop sets it for its half-open breaker's probe message: the answer proves Redis works, so the loop
   * closes the breaker then, instead of when the run ends (minutes with an LLM agent), which kept the
   * worker at one task at a time after an outage.
   */
  redisAnswered?: () => void;
}

export type Outcome = "done" | "failed" | "canceled" | "retry" | "skipped" | "busy" | "poison" | "handed_back" | "lost" | "parked"
  /** a due delayed task's message, sent on to the request topic (lib/worker/delayed.ts) */
  | "forwarded";

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
/** POST /tasks/:id/cancel asked for this task (lib/worker/cancel-watch.ts, or the heartbeat saw it). */
class CancelAbort extends Error {
  override name = "CancelAbort";
}
/** Redis or RocketMQ failed underneath a message: the consumer loop's breaker counts these. */
export class DependencyError extends Error {
  override name = "DependencyError";
  constructor(readonly dependency: "redis" | "rocketmq", message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function retryDelayMs(cfg: Config, attempt: number, retryAfterMs?: number): number {
  const backoff = cfg.RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1);
  return Math.min(MAX_HIDE_MS, Math.max(MIN_HIDE_MS, backoff, retryAfterMs ?? 0));
}

type Parsed = { ok: true; msg: RequestMessage } | { ok: false; reason: string; taskId?: string; userId?: string; tenant?: string };

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
  // Recorded for a task Redis does not know (finish.lua "force"): without it the owner's GET answers 404.
  const tenant = typeof obj.tenant === "string" && obj.tenant.length <= 64 ? obj.tenant : undefined;
  return { ok: false, reason: `invalid request message: ${first?.path || "/"} ${first?.message}`, taskId, userId, tenant };
}

/** Publishes `r`, the outcome of handling message `of` (whose trace the send span joins). */
export async function publishResult(ctx: WorkerContext, of: MessageView, r: ResultMessage): Promise<void> {
  try {
    await ctx.publisher.send({ topic: ctx.cfg.MQ_TOPIC_RESULT, tag: RESULT_TAG, key: r.task_id, body: encodeJson(r), traceParent: traceOf(of), span: true });
  } catch (e) {
    throw new DependencyError("rocketmq", `result not published: ${toError(e).message}`, { cause: e });
  }
}

export function resultMessage(
  msg: { task_id: string; user_id: string }, attempts: number, result: AgentResult | null, error?: string,
  status: ResultMessage["status"] = result ? "done" : "failed",
): ResultMessage {
  return {
    task_id: msg.task_id,
    user_id: msg.user_id,
    result,
    status,
    ...(error !== undefined ? { error } : {}),
    attempts,
    finished_at: new Date().toISOString(),
  };
}

/**
 * A message that can never be processed: set aside with its reason, recorded as failed if it names an
 * unknown task, acked once that task's failure result is out. The failure is recorded under a claim
 * of this copy (finish.lua "force"): the publish is retried with the message in hand, and at shutdown
 * the claim is dropped and the message handed back, so its next delivery takes the claim and publishes.
 */
export async function poison(m: MessageView, p: Extract<Parsed, { ok: false }>, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const log = ctx.log.child({ message_id: m.messageId, ...(p.taskId ? { task_id: p.taskId } : {}) });
  const error = `message could not be processed: ${p.reason}`;
  const claim = p.taskId ? { id: p.taskId, token: crypto.randomUUID() } : undefined;
  // Only a task Redis does not know is failed: a known one has its own, valid message.
  const f = claim ? await ctx.store.forceFail(claim.id, { token: claim.token, leaseMs: ctx.cfg.MQ_INVISIBLE_MS }, error, p.userId ?? "", p.tenant ?? "") : undefined;
  if (f === "held") {
    // An earlier copy is publishing its failure result now. Not acked: if that worker dies, this copy publishes it.
    await ctx.settler.hide(m, ctx.cfg.MQ_INVISIBLE_MS);
    return "busy";
  }
  if (f !== "pending") {
    // Set aside once: a copy handed back at shutdown ("pending" on its next delivery) was set aside before.
    log.warn("message set aside: cannot be processed", { reason: p.reason });
    await ctx.store.deadLetter({
      reason: p.reason,
      message_id: m.messageId,
      task_id: p.taskId,
      body: m.body.toString("utf8").slice(0, ctx.cfg.DEAD_LETTER_BODY_CHARS),
      at: new Date().toISOString(),
    });
  }
  if (claim && (f === "written" || f === "pending")) {
    const message = resultMessage({ task_id: claim.id, user_id: p.userId ?? "" }, 0, null, error);
    if (!(await publishHeld(m, ctx, message, shutdown, log, claim))) {
      log.warn("failure result still unpublished at shutdown: message handed back");
      return "handed_back";
    }
    const w = await ctx.store.published(claim.id, claim.token);
    if (w !== "written") log.warn("failure result published but the claim was lost meanwhile; the next copy publishes again", { outcome: w });
  }
  await ctx.settler.ack(m);
  return "poison";
}

/** How long before its lease ends a run with no heartbeat through stops itself (the self-fence). */
export const fenceMarginMs = (leaseMs: number) => Math.max(2_000, Math.floor(leaseMs / 6));

/**
 * Why this configuration lets a deaf agent (one that ignores its AbortSignal) run beside another
 * worker's claim of its task, if it does: a fenced run is failed TASK_ABORT_GRACE_MS after its fence,
 * which must come before its lease ends. Logged at a worker's start (docs/reliability.md).
 */
export function deafAgentRisk(cfg: Pick<Config, "MQ_INVISIBLE_MS" | "TASK_ABORT_GRACE_MS">): string | undefined {
  const margin = fenceMarginMs(cfg.MQ_INVISIBLE_MS);
  if (cfg.TASK_ABORT_GRACE_MS < margin) return undefined;
  return `TASK_ABORT_GRACE_MS (${cfg.TASK_ABORT_GRACE_MS} ms) is not under the self-fence margin of MQ_INVISIBLE_MS ` +
    `(${margin} ms, a sixth of it, at least 2 s): an agent that ignores its AbortSignal after its heartbeats failed may still run ` +
    `when another worker claims its task; lower TASK_ABORT_GRACE_MS or raise MQ_INVISIBLE_MS`;
}

/** Wait before the n-th retry of a result publish: 2 s doubling to 30 s. */
export const publishRetryMs = (n: number) => Math.min(30_000, MIN_HIDE_MS * 2 ** Math.min(Math.max(n, 1), 5));

/**
 * How long a claim that may be ours is offered back while Redis is away. The release checks the
 * claim token, so it is safe however late it lands; the longer it is tried, the fewer outage-cut runs
 * count as attempts.
 */
const releaseRetryMs = (leaseMs: number) => Math.max(10 * leaseMs, 600_000);

/** Retries `op` every few seconds in the background until it resolves or `forMs` ran out (Redis was down). */
function retryLater(op: () => Promise<unknown>, forMs: number, log: Logger, what: string) {
  const until = Date.now() + forMs;
  const attempt = () => {
    op().catch(() => {
      if (Date.now() < until) setTimeout(attempt, 2_000).unref?.();
      else log.warn(`${what}: gave up`);
    });
  };
  setTimeout(attempt, 1_000).unref?.();
}

/** How long a hand-back at shutdown retries its release (Redis failing), within the worker's shutdown budget. */
const HANDBACK_RELEASE_MS = 10_000;

/**
 * Runs `op` until it resolves, retrying (finishRetryMs) for at most `forMs`. False when it never did.
 * A try that timed out but landed makes the next one find nothing to do, which resolves too.
 */
async function retriedFor(op: () => Promise<unknown>, forMs: number): Promise<boolean> {
  const until = Date.now() + forMs;
  for (let tries = 1; ; tries++) {
    try {
      await op();
      return true;
    } catch {
      const delay = finishRetryMs(tries);
      if (Date.now() + delay > until) return false;
      await Bun.sleep(delay);
    }
  }
}

/**
 * Publishes `message` for message `m`, the outcome recorded under `claim`, retrying only the publish
 * (2 s doubling to 30 s) while `m` is kept in hand and hidden and the claim's lease alive. True once
 * published; false when `shutdown` came first: the claim is then dropped (the outcome stays recorded)
 * and `m` handed back, so its next delivery takes the claim and publishes.
 */
async function publishHeld(
  m: MessageView, ctx: WorkerContext, message: ResultMessage, shutdown: AbortSignal, log: Logger, claim: HeldClaim,
): Promise<boolean> {
  let hold: { stop(): void } | undefined;
  try {
    for (let tries = 1; ; tries++) {
      try {
        await publishResult(ctx, m, message);
        return true;
      } catch (e) {
        const delay = publishRetryMs(tries);
        if (tries === 1 || tries % 10 === 0)
          log.warn("result not published; only the publish is retried, the message kept in hand", { error: toError(e), tries, retry_in_ms: delay });
        hold ??= keepHidden(m, ctx, claim);
        if (!(await sleep(delay, shutdown).then(() => true, () => false))) {
          hold.stop();
          await ctx.store.release(claim.id, claim.token, MIN_HIDE_MS).catch(() => {});
          await ctx.settler.hide(m, MIN_HIDE_MS).catch(() => {});
          return false;
        }
      }
    }
  } finally {
    hold?.stop();
  }
}

/** Wait before the n-th retry of a run's final Redis write: 250 ms doubling to 5 s (a blip, or an outage). */
export const finishRetryMs = (n: number) => Math.min(5_000, 250 * 2 ** Math.min(Math.max(n - 1, 0), 5));

/**
 * Makes a run's final Redis write under `claim` (its result recorded, its failure, its retry, its
 * cancellation, or its published mark), retrying only that write while a Redis blip or outage lasts,
 * the message kept in hand and hidden and the claim's lease kept alive, as publishHeld does for the
 * publish. Thrown to the consumer loop instead, the write was lost with the run: the heartbeat had
 * stopped, the lease ran out, and the next claim took the run for a crash (with MAX_ATTEMPTS = 1, the
 * task of an agent that succeeded failed "its runs never finished"), or ran the agent again.
 * Fencing stays with the scripts: finish.lua writes only while the claim's owner is this token, so a
 * retry that comes after another worker claimed the task writes nothing ("not_owner").
 * At shutdown the claim is released (the run not counted, as a run handed back at shutdown) and the
 * message handed back after `handBackMs`, as publishHeld does: "handed_back".
 */
async function finishHeld(
  m: MessageView, ctx: WorkerContext, claim: HeldClaim, write: () => Promise<FinishOutcome>, shutdown: AbortSignal,
  log: Logger, what: string, handBackMs = MIN_HIDE_MS,
): Promise<FinishOutcome | "handed_back"> {
  let hold: { stop(): void } | undefined;
  const release = () => ctx.store.release(claim.id, claim.token, handBackMs);
  // A try that timed out may have landed without its answer; its repeat then finds the outcome
  // written and answers "not_owner" (finish.lua wants a running claim with nothing recorded).
  let unsure = false;
  let op = write;
  let releasing = false;
  try {
    for (let tries = 1; ; tries++) {
      try {
        const w = await op();
        if (releasing) {
          // "written": an outcome was recorded under our claim and only the claim is dropped: the
          // next claim publishes it (claim.lua {5}), never runs the agent. Otherwise the claim is not
          // ours (another worker's, or an earlier retry landed: the task is queued for its retry).
          if (w !== "written") return w;
          await ctx.settler.hide(m, handBackMs).catch(() => {});
          log.info(`${what} may have been written by a try that timed out: claim dropped, message handed back`);
          return "handed_back";
        }
        if (w === "not_owner" && unsure) {
          // Which outcome landed (this one, or canceled instead) is known to the next claim, not here.
          releasing = true;
          op = release;
          tries = 0;
          continue;
        }
        return w;
      } catch (e) {
        if (!neverSent(e)) unsure = true;
        const delay = finishRetryMs(tries);
        if (tries === 1 || tries % 10 === 0)
          log.warn(`${what} not written to Redis; only that write is retried, the message kept in hand`, { error: toError(e), tries, retry_in_ms: delay });
        hold ??= keepHidden(m, ctx, claim);
        if (!(await sleep(delay, shutdown).then(() => true, () => false))) {
          hold.stop();
          // With Redis still away the release fails too: the next claim then counts this run as one
          // that died, which nothing left in this process can prevent.
          const r = await release().catch((e) => toError(e));
          if (r instanceof Error) log.warn(`${what} not written at shutdown and the claim not released`, { error: r });
          await ctx.settler.hide(m, handBackMs).catch(() => {});
          log.info(`${what} still not written at shutdown: handed back`);
          return "handed_back";
        }
      }
    }
  } finally {
    hold?.stop();
  }
}

/**
 * Publishes the outcome recorded under this claim (a result, or a final failure), then marks the
 * task finished and acks. A failed publish drops only the claim (the outcome stays recorded): the
 * message comes back and the next claim publishes again, never running the agent again.
 */
async function publishOutcome(
  m: MessageView, ctx: WorkerContext, msg: RequestMessage, token: string, attempts: number, result: AgentResult | null,
  error: string | undefined, shutdown: AbortSignal, opts: { withUsage?: boolean; canceled?: boolean } = {},
): Promise<Outcome> {
  const log = ctx.log.child({ task_id: msg.task_id });
  const message = resultMessage(msg, attempts, result, error, opts.canceled ? "canceled" : undefined);
  // The usage summed over every attempt is in the record (finish.lua): read only when this run made LLM calls.
  const usage = opts.withUsage ? await ctx.store.usage(msg.task_id).catch(() => undefined) : undefined;
  if (usage) message.usage = usage;
  // The result topic refusing writes (read-only, full disk) must not spend the request message's
  // deliveries: a hide-and-redeliver per try dead-lettered whole backlogs in seconds. The message stays
  // in hand, kept hidden like a running task's, while only the publish is retried with backoff
  // (publishHeld); at shutdown it is handed back (the next claim publishes the recorded outcome, never
  // runs the agent).
  if (!(await publishHeld(m, ctx, message, shutdown, log, { id: msg.task_id, token }))) {
    log.info("result still unpublished at shutdown: handed back");
    return "handed_back";
  }
  const claim = { id: msg.task_id, token };
  const status = opts.canceled ? "canceled" : result ? "done" : "failed";
  // Observed per try: a try that threw, or a hand-back, records no end-to-end time.
  const w = await finishHeld(m, ctx, claim, () => observeFinish(m, status, () => ctx.store.published(msg.task_id, token)), shutdown, log, "published mark");
  // Handed back with the result out: the next claim publishes it again (downstream absorbs it by key).
  if (w === "handed_back") return w;
  if (w !== "written") log.warn("result published but the claim was lost meanwhile; the next claim publishes again", { outcome: w });
  await ctx.settler.ack(m);
  if (opts.canceled) log.info("task canceled", { attempt: attempts });
  else if (result) log.info("task done", { attempt: attempts });
  else log.warn("task failed", { attempt: attempts, error });
  return opts.canceled ? "canceled" : result ? "done" : "failed";
}

/**
 * Runs one message to a settled state. `shutdown` aborts the run to hand the task back.
 * Throws only when Redis or RocketMQ fail underneath; the message then comes back by itself
 * once its invisibility ends.
 */
export async function handleMessage(m: MessageView, ctx: WorkerContext, shutdown: AbortSignal): Promise<Outcome> {
  const parsed = parseRequest(m.body);
  if (!parsed.ok) return poison(m, parsed, ctx, shutdown);
  const msg = parsed.msg;
  const iso = ctx.isolation;
  if (!iso) {
    const r = await claimAndRun(m, ctx, msg, shutdown, false);
    return r === SUSPECT ? ((await claimAndRun(m, ctx, msg, shutdown, true)) as Outcome) : r;
  }
  // While a suspect runs alone here, claims wait (holding the message hidden), so that a crash it
  // causes does not charge them an attempt.
  let leave: () => void;
  const hold = keepHidden(m, ctx);
  try {
    leave = await iso.enter(shutdown);
  } catch (e) {
    return handBackWaiting(m, ctx, hold, e);
  }
  hold.stop();
  let r: Outcome | typeof SUSPECT;
  try {
    r = await claimAndRun(m, ctx, msg, shutdown, false);
  } finally {
    leave();
  }
  if (r !== SUSPECT) return r;
  ctx.log.warn("an earlier run of this task died with its worker: running it alone in this process", { task_id: msg.task_id });
  const held = keepHidden(m, ctx);
  try {
    return await iso.exclusive(() => {
      held.stop();
      return claimAndRun(m, ctx, msg, shutdown, true) as Promise<Outcome>;
    }, shutdown);
  } catch (e) {
    if (e instanceof ShutdownAbort || shutdown.aborted) return handBackWaiting(m, ctx, held, e);
    throw e;
  } finally {
    held.stop();
  }
}

const SUSPECT = Symbol("suspect");

/** A claim held while its outcome's publish is retried. */
type HeldClaim = { id: string; token: string };

/**
 * Keeps a message in hand hidden, and with `claim` that claim's Redis lease alive too: a result topic
 * refusing writes for longer than a lease must not let the stalled-task check re-send the task, whose
 * next claim would publish the same result a second time.
 */
function keepHidden(m: MessageView, ctx: WorkerContext, claim?: HeldClaim) {
  let on = true;
  const leaseMs = ctx.cfg.MQ_INVISIBLE_MS;
  const t = setInterval(() => {
    ctx.settler.hide(m, leaseMs, () => on).catch(() => {});
    if (claim) ctx.store.heartbeat(claim.id, claim.token, leaseMs).catch(() => {});
  }, Math.max(1_000, Math.floor(leaseMs / 3)));
  return {
    stop() {
      on = false;
      clearInterval(t);
    },
  };
}

async function handBackWaiting(m: MessageView, ctx: WorkerContext, hold: { stop(): void }, e: unknown): Promise<Outcome> {
  hold.stop();
  if (!(e instanceof ShutdownAbort) && !(toError(e).name === "ShutdownAbort")) throw e;
  await ctx.settler.hide(m, MIN_HIDE_MS).catch(() => {});
  return "handed_back";
}

/** Claims (as a suspect only with `isolated`) and runs the task to a settled state. */
async function claimAndRun(
  m: MessageView, ctx: WorkerContext, msg: RequestMessage, shutdown: AbortSignal, isolated: boolean,
): Promise<Outcome | typeof SUSPECT> {
  const log = ctx.log.child({ task_id: msg.task_id });
  const { cfg, store, settler } = ctx;
  const token = crypto.randomUUID();
  const leaseMs = cfg.MQ_INVISIBLE_MS;

  // Watched from before the claim: a cancellation announced while the claim is on its way is not missed.
  const run = new AbortController();
  const cancel = () => run.abort(new CancelAbort("its cancellation was asked (POST /tasks/:id/cancel)"));
  const unwatch = ctx.cancels?.watch(msg.task_id, cancel) ?? (() => {});

  // The lease is measured from when the claim was *sent*: Redis started it no earlier (fencing, below).
  let leaseFrom = performance.now();
  let claim: Claim;
  try {
    claim = await observeClaim(m, msg.task_id, () => store.claim(msg.task_id, token, leaseMs, msg.user_id, {
      message: m.body.toString("utf8"), maxAttempts: cfg.MAX_ATTEMPTS, isolated,
    }));
  } catch (e) {
    // The claim may still land (a timeout, not a refusal): give it back once Redis answers, so a run
    // that never happened does not count as an attempt (finish.lua "release" needs this token).
    unwatch();
    if (!neverSent(e)) retryLater(() => store.release(msg.task_id, token, 0), releaseRetryMs(leaseMs), log, "release of an unanswered claim");
    throw new DependencyError("redis", `claim failed: ${toError(e).message}`, { cause: e });
  }
  ctx.redisAnswered?.();
  if (claim.kind !== "claimed") unwatch();
  if (claim.kind === "finished") {
    if (claim.status === "rejected") log.info("message of a task that was not accepted (the client got a 503): skipped");
    else log.info("duplicate delivery of a finished task: skipped", { status: claim.status, delivery: m.deliveryAttempt });
    await settler.ack(m);
    return "skipped";
  }
  if (claim.kind === "busy") {
    // Another worker runs it now, or its retry's backoff (back_at) has not ended. Not acked: if that
    // worker dies, this copy is what brings the task back.
    log.info("task is running elsewhere: message hidden until its lease ends", { lease_left_ms: claim.leaseLeftMs });
    await settler.hide(m, Math.min(MAX_HIDE_MS, Math.max(MIN_HIDE_MS, claim.leaseLeftMs + 1_000)));
    return "busy";
  }
  if (claim.kind === "suspect") return SUSPECT;
  if (claim.kind === "publish") {
    if (claim.exhausted) log.warn("task failed: its runs never finished", { error: claim.error, attempts: claim.attempts });
    else log.info("result recorded earlier but not published: publishing only", { outcome: claim.outcome });
    return publishOutcome(m, ctx, msg, token, claim.attempts, claim.result ?? null, claim.error, shutdown, {
      withUsage: true,
      canceled: claim.outcome === "canceled",
    });
  }
  const attempt = claim.attempt;
  log.info("task running", { attempt, delivery: m.deliveryAttempt });
  /** This run's claim, held through its final writes (finishHeld). */
  const held: HeldClaim = { id: msg.task_id, token };

  let ended = false;
  const onShutdown = () => run.abort(new ShutdownAbort("worker shutting down"));
  shutdown.addEventListener("abort", onShutdown, { once: true });
  if (shutdown.aborted) onShutdown();
  // Paused while the agent waits for a shared slot (lib/agent/clock.ts): waiting is not running.
  const clock = runClock(cfg.TASK_TIMEOUT_MS, () => run.abort(new TaskTimeout(`task timed out after ${cfg.TASK_TIMEOUT_MS} ms`)));
  // Heartbeat: keep the claim and the message alive while the agent works (minutes, maybe). The two
  // steps do not wait on each other: a hung Redis must not let the message reappear.
  const beatEvery = Math.max(1_000, Math.floor(leaseMs / 3));
  const beat = setInterval(() => {
    const sentAt = performance.now();
    store.heartbeat(msg.task_id, token, leaseMs).then(
      (ours) => {
        if (ours) leaseFrom = Math.max(leaseFrom, sentAt);
        else run.abort(new LeaseLost("claim lost to another worker"));
        if (ours === "cancel") cancel(); // the fallback when the cancel notice was lost
      },
      (e) => log.debug("heartbeat to Redis failed", { error: toError(e) }),
    );
    settler.hide(m, leaseMs, () => !ended).catch((e) => log.warn("could not extend message invisibility", { error: toError(e) }));
  }, beatEvery);
  // Self-fencing: with no heartbeat through for nearly a lease, another worker may claim the task
  // soon; stop before it can, and never publish (the result is recorded under the claim first).
  const fenceMargin = fenceMarginMs(leaseMs);
  const fence = setInterval(() => {
    if (performance.now() - leaseFrom > leaseMs - fenceMargin)
      run.abort(new LeaseLost(`no heartbeat reached Redis for ${Math.round(performance.now() - leaseFrom)} ms: run fenced`));
  }, Math.min(1_000, fenceMargin / 2));

  let result: AgentResult | undefined;
  let failure: Error | undefined;
  // This run's LLM calls, recorded with its end (finish.lua sums them into the task's usage).
  const meter = usageMeter();
  /** How a canceled run's result goes out: as canceled, with the LLM usage it did spend. */
  const canceledRun = { canceled: true, get withUsage() { return meter.total() !== undefined; } };
  // Hard deadline: once aborted, the agent has TASK_ABORT_GRACE_MS to stop; then its slot is freed anyway.
  // An agent still running after the grace ignored its signal and may run on in this process: such
  // a task is failed, never retried, since a retry would run it twice at the same time.
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let deaf = false;
  const ignored = new Promise<never>((_, reject) => {
    const arm = () => {
      graceTimer = setTimeout(() => {
        deaf = true;
        reject(run.signal.reason);
      }, cfg.TASK_ABORT_GRACE_MS);
    };
    // Aborted already: a cancellation announced while the claim was on its way.
    if (run.signal.aborted) arm();
    else run.signal.addEventListener("abort", arm, { once: true });
  });
  ignored.catch(() => {});
  const progress = progressReporter(store, msg.task_id, token, log);
  try {
    const agentRun = observeAgentRun(m, () => ctx.agent(
      {
        task_id: msg.task_id, user_id: msg.user_id, content: msg.payload, attempt, paused: clock.paused, usage: meter.add,
        progress: progress.report,
      },
      run.signal,
    ));
    result = await Promise.race([agentRun, ignored]);
  } catch (e) {
    failure = run.signal.aborted ? toError(run.signal.reason) : toError(e);
  } finally {
    ended = true;
    clearInterval(beat);
    clearInterval(fence);
    clock.stop();
    clearTimeout(graceTimer);
    shutdown.removeEventListener("abort", onShutdown);
    unwatch();
    if (!result) progress.stop(); // no more progress writes for a run that ended without a result
  }

  // A deaf agent (it ignored its signal through the grace) may run on in this process whatever
  // aborted it: handing its task back after a shutdown, or releasing it after a fence, would let
  // another worker run it beside the ignored run. Failed instead, never retried (README, "Hard deadline").
  if (deaf && failure instanceof LeaseLost) {
    const reason = `${failure.name}: ${failure.message}; ${deafNote(cfg)}`;
    log.warn("agent ignored its AbortSignal after its run was fenced: not released; failed if the claim is still ours", { attempt, reason });
    // Not released. The failure is written only while the claim is still ours (finish.lua checks the
    // token), so it is safe however late it lands; its message comes back once its invisibility ends,
    // and the next claim publishes the recorded failure without running the agent.
    const failIt = () => store.fail(msg.task_id, token, reason, meter.total());
    failIt().catch(() => retryLater(failIt, releaseRetryMs(leaseMs), log, "failure of a fenced deaf run"));
    return "lost";
  }
  if (failure instanceof ShutdownAbort && !deaf) {
    // Released, the run is not counted. Lost to a Redis blip, the claim would run out and the next
    // claim count this run as one that died (an attempt spent, the task then run alone, and on its
    // last attempt failed "its runs never finished"): retried for a few seconds of the shutdown's budget.
    if (!(await retriedFor(() => store.release(msg.task_id, token, MIN_HIDE_MS), HANDBACK_RELEASE_MS)))
      log.warn("claim not released at shutdown (Redis failing): the next claim counts this run as one that died");
    // Hidden for the shortest time, so another worker picks it up within seconds.
    await settler.hide(m, MIN_HIDE_MS);
    log.info("task handed back at shutdown");
    return "handed_back";
  }
  if (failure instanceof CancelAbort) {
    if (deaf) log.warn("agent ignored its AbortSignal after a cancellation: slot freed, task canceled", { attempt });
    const w = await finishHeld(m, ctx, held, () => store.cancelRun(msg.task_id, token, meter.total()), shutdown, log, "canceled run");
    if (w === "handed_back") return w;
    if (w !== "written") {
      log.warn("canceled run not recorded: the claim was lost", { outcome: w });
      return "lost";
    }
    return publishOutcome(m, ctx, msg, token, attempt, null, undefined, shutdown, canceledRun);
  }
  if (failure instanceof LeaseLost) {
    log.warn("task abandoned: its claim is lost or could not be renewed", { reason: failure.message });
    // If the claim is still ours after all (Redis was only unreachable), hand it back uncounted.
    retryLater(() => store.release(msg.task_id, token, 0), releaseRetryMs(leaseMs), log, "release of a fenced run");
    return "lost";
  }

  // The last report is written before the result is recorded (progress.lua refuses it after).
  if (result) await progress.flush();
  if (result) {
    // Recorded under the claim before publishing: a failed publish repeats only the publish, and a
    // run that lost its claim never publishes.
    const r = result;
    const w = await finishHeld(m, ctx, held, () => store.recordResult(msg.task_id, token, r, meter.total()), shutdown, log, "result");
    if (w === "handed_back") return w;
    if (w === "canceled") return publishOutcome(m, ctx, msg, token, attempt, null, undefined, shutdown, canceledRun);
    if (w !== "written") {
      log.warn("result not recorded: the claim was lost; not published", { outcome: w });
      return "lost";
    }
    return publishOutcome(m, ctx, msg, token, attempt, result, undefined, shutdown, { withUsage: meter.total() !== undefined });
  }

  const err = failure ?? new Error("agent returned nothing");
  if (deaf) {
    // A shutdown's deaf run ends here too (ShutdownAbort): failed like a timed-out one.
    err.message += `; ${deafNote(cfg)}`;
    log.warn("agent ignored its AbortSignal: slot freed, task failed instead of retried", { attempt });
  }
  const final = err instanceof PermanentAgentError || attempt >= cfg.MAX_ATTEMPTS || deaf;
  if (!final) {
    const delay = retryDelayMs(cfg, attempt, err instanceof RetryableAgentError ? err.retryAfterMs : undefined);
    // Handed back at shutdown after `delay`, not sooner: an LLM's Retry-After still holds.
    const w = await finishHeld(m, ctx, held, () => store.retry(msg.task_id, token, err.message, delay, meter.total()), shutdown, log, "retry", delay);
    if (w === "handed_back") return w;
    if (w === "canceled") return publishOutcome(m, ctx, msg, token, attempt, null, undefined, shutdown, canceledRun);
    if (w !== "written") {
      log.warn("attempt failed and the claim was lost meanwhile", { outcome: w, error: err.message });
      return "lost";
    }
    await settler.hide(m, delay);
    log.warn("task attempt failed; will retry", { attempt, error: err.message, retry_in_ms: delay });
    return "retry";
  }
  const reason = `${err.name}: ${err.message}`;
  const w = await finishHeld(m, ctx, held, () => store.fail(msg.task_id, token, reason, meter.total()), shutdown, log, "final failure");
  if (w === "handed_back") return w;
  if (w === "canceled") return publishOutcome(m, ctx, msg, token, attempt, null, undefined, shutdown, canceledRun);
  if (w !== "written") {
    log.warn("final failure not recorded: the claim was lost", { outcome: w, error: reason });
    return "lost";
  }
  return publishOutcome(m, ctx, msg, token, attempt, null, reason, shutdown, { withUsage: meter.total() !== undefined });
}

/** What a deaf run's failure says (README, "Hard deadline"). */
const deafNote = (cfg: Config) =>
  `the agent ignored its AbortSignal for ${cfg.TASK_ABORT_GRACE_MS} ms and may still run, so the task is not retried`;

/** Sums one run's LLM calls (AgentTask.usage); `total()` is undefined when the agent made none. */
function usageMeter() {
  let u: TaskUsage | undefined;
  return {
    add: (c: LlmCall) => {
      u ??= { model: c.model, prompt_tokens: 0, completion_tokens: 0, llm_ms: 0, calls: 0, attempts: 1 };
      u.model = c.model;
      u.prompt_tokens += c.prompt_tokens;
      u.completion_tokens += c.completion_tokens;
      u.llm_ms += c.ms;
      u.calls++;
    },
    total: () => u,
  };
}
