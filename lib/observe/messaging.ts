// RocketMQ sends and receives seen by metrics and traces: the trace context every send carries in the
// message's properties (and the producer span of the result's send), and the consumer side of a
// worker: the task's steps as spans in the trace its message carries (claim, agent run, finish), and
// the per-message counts and timings (docs/observability.md).
// Spans cost CPU per task (docs/observability.md, "Overhead"): a task makes one span per step an
// operator looks at (submit, claim, agent run, LLM calls, publish, finish) and no more, with the
// attributes an operator searches by. The API's send of the request and the worker's receipt of it
// have no spans of their own: the message carries the `submit` span's context, and `claim` is the
// consumer span.
import type { MessageView } from "rocketmq-client-nodejs";
import { deadLetterGroup, delayGroup } from "../provision.ts";
import type { Claim } from "../store.ts";
import type { Outcome, Settler, WorkerContext } from "../worker/handle.ts";
import { labelled, metrics, timeMq } from "./metrics.ts";
import { contextOfMessage, inSpan, SpanKind, traceProperties, tracingOn, type Context } from "./tracing.ts";

type Handler = (m: MessageView, ctx: WorkerContext, shutdown: AbortSignal) => Promise<Outcome>;

/**
 * Sends through `send`, giving it `m.traceParent` (else the active context) as message properties;
 * with `m.span`, inside a producer span `send <topic>` (its child) whose context the message carries
 * instead. Tracing off: `send(undefined)` at once.
 */
export function tracedSend(
  m: { topic: string; traceParent?: Context; span?: boolean },
  send: (properties?: Record<string, string>) => Promise<string>,
): Promise<string> {
  if (!tracingOn()) return send(undefined);
  if (!m.span) return send(traceProperties(m.traceParent));
  return inSpan(`send ${m.topic}`, (c) => send(traceProperties(c)), {
    kind: SpanKind.PRODUCER,
    parent: m.traceParent,
    activate: false,
    attributes: { "messaging.system": "rocketmq", "messaging.operation.type": "send", "messaging.destination.name": m.topic },
    onResult: (s, id) => s.setAttribute("messaging.message.id", id),
  });
}

/** The group each consumer loop of a worker reads as. */
const GROUP_OF = { tasks: (g: string) => g, "dead-letters": deadLetterGroup, delayed: delayGroup };

/** Per message: the time from claim to finish, for the end-to-end histogram. */
const claimed = new WeakMap<MessageView, { waitedMs: number; at: number }>();
/**
 * Per message: the trace context its properties carry, the parent of the task's steps (handed on, not
 * active), and the consumer group it was read as (an attribute of the claim span).
 */
const traces = new WeakMap<MessageView, { parent: Context; group: string }>();

/** The trace context of a message being processed, for a send it makes. */
export const traceOf = (m: MessageView): Context | undefined => traces.get(m)?.parent;

/**
 * A consumer loop's handler, observed: the trace context in the message's properties noted as the
 * parent of the task's spans, in-flight gauge, outcome counts, and timed acks and hides. Unchanged
 * when metrics and tracing are both off.
 */
export function observeHandler(loop: "tasks" | "dead-letters" | "delayed", handler: Handler, concurrency: number): Handler {
  const M = metrics();
  if (!M && !tracingOn()) return handler;
  M && labelled(M.capacity, loop).set(concurrency);
  const inflight = M && labelled(M.inflight, loop);
  return (m, ctx, shutdown) => {
    inflight?.inc();
    if (tracingOn()) {
      traces.set(m, { parent: contextOfMessage(m.properties), group: GROUP_OF[loop](ctx.cfg.MQ_GROUP_AGENT) });
    }
    const p = handler(m, M ? { ...ctx, settler: timedSettler(ctx.settler) } : ctx, shutdown);
    if (!M) return p;
    return p.then(
      (outcome) => {
        inflight!.dec();
        countOutcome(M, loop, outcome);
        return outcome;
      },
      (e) => {
        inflight!.dec();
        labelled(M.messages, loop, "error").inc();
        throw e;
      },
    );
  };
}

function countOutcome(M: NonNullable<ReturnType<typeof metrics>>, loop: string, outcome: Outcome) {
  labelled(M.messages, loop, outcome).inc();
  if (outcome === "done" || outcome === "failed" || outcome === "canceled") labelled(M.finished, outcome).inc();
  else if (outcome === "retry") M.retries.inc();
  else if (outcome === "handed_back") M.handBacks.inc();
  if (outcome === "poison") labelled(M.deadLetters, "poison").inc();
  else if (loop === "dead-letters") labelled(M.deadLetters, "broker").inc();
}

function timedSettler(s: Settler): Settler {
  return {
    ack: (m) => timeMq("ack", s.ack(m)),
    hide: (m, ms, onlyIf) => timeMq("change_invisible", s.hide(m, ms, onlyIf)),
  };
}

/**
 * The claim, in the consumer span of the message's delivery (a retry is another `claim` in the same
 * trace); notes the queue wait (first attempt) and the claim time for the end-to-end time.
 */
export function observeClaim(m: MessageView, taskId: string, claim: () => Promise<Claim>): Promise<Claim> {
  const M = metrics();
  const t = traces.get(m);
  const p = inSpan("claim", claim, {
    kind: SpanKind.CONSUMER,
    parent: t?.parent,
    activate: false,
    attributes: {
      "messaging.system": "rocketmq",
      "messaging.operation.type": "process",
      "messaging.destination.name": m.topic,
      "messaging.consumer.group.name": t?.group ?? "",
      "messaging.message.id": m.messageId,
      "agent.task_id": taskId,
    },
    onResult: (s, c) => s.setAttributes({ "agent.claim": c.kind, ...(c.kind === "claimed" ? { "agent.attempt": c.attempt } : {}) }),
  });
  if (!M) return p;
  return p.then((c) => {
    const waitedMs = c.kind === "claimed" ? c.waitedMs : undefined;
    if (waitedMs !== undefined) {
      if (c.kind === "claimed" && c.attempt === 1) M.queueWait.observe(waitedMs / 1000);
      claimed.set(m, { waitedMs, at: performance.now() });
    }
    return c;
  });
}

/**
 * One run of the agent, in a span, timed by outcome. The one span of a worker made the active
 * context: the agent's LLM calls (lib/observe/llm.ts) find their parent by it.
 */
export function observeAgentRun<T>(m: MessageView, run: () => Promise<T>): Promise<T> {
  const M = metrics();
  const t0 = M ? performance.now() : 0;
  const p = inSpan("agent run", run, { parent: traceOf(m) });
  if (!M) return p;
  p.then(
    () => labelled(M.run, "ok").observe((performance.now() - t0) / 1000),
    () => labelled(M.run, "error").observe((performance.now() - t0) / 1000),
  );
  return p;
}

/** The task marked finished after its result was published, in a span; observes its end-to-end time. */
export function observeFinish<T>(m: MessageView, status: "done" | "failed" | "canceled", finish: () => Promise<T>): Promise<T> {
  const M = metrics();
  const p = inSpan("finish", finish, { parent: traceOf(m), activate: false, attributes: { "agent.status": status } });
  const c = M && claimed.get(m);
  if (!c) return p;
  return p.then((r) => {
    labelled(M!.e2e, status).observe((c.waitedMs + performance.now() - c.at) / 1000);
    return r;
  });
}
