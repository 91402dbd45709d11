// Prometheus metrics (prom-client): one registry per process, built only when metrics are on (the
// API: METRICS_ENABLED; a worker: WORKER_METRICS_PORT set). Until then every recording function is a
// no-op that returns at its first line, so a process without metrics pays nothing and loads nothing.
// Names follow Prometheus conventions (`agent_` namespace, `_total`, `_seconds`, base units); every
// label value comes from a small fixed set or from configuration (topic, group, model), never from a
// task, user or tenant. The list with meanings is docs/observability.md.
import type { Counter, Gauge, Histogram } from "prom-client";
import { CallHistogram } from "./call-histogram.ts";

/** Seconds, from 5 ms to an hour: queue waits, runs and end-to-end times of agent tasks. */
const TASK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Seconds, from 0.25 ms: one Redis command or one RocketMQ request. */
const CALL_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Seconds, one LLM call. */
const LLM_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

function build(prom: typeof import("prom-client")) {
  const registry = new prom.Registry();
  const registers = [registry];
  const counter = (name: string, help: string, labelNames: string[] = []) => new prom.Counter({ name, help, labelNames, registers });
  const histogram = (name: string, help: string, buckets: number[], labelNames: string[] = []) =>
    new prom.Histogram({ name, help, buckets, labelNames, registers });
  const gauge = (name: string, help: string, labelNames: string[] = []) => new prom.Gauge({ name, help, labelNames, registers });
  return {
    registry,
    // API: POST /tasks
    submitted: counter("agent_tasks_submitted_total", "POST /tasks requests received"),
    accepted: counter("agent_tasks_accepted_total", "tasks accepted (202): recorded in Redis and confirmed by RocketMQ"),
    rejected: counter("agent_tasks_rejected_total", "POST /tasks refused, by the error code answered", ["reason"]),
    outboxResent: counter("agent_outbox_resent_total", "request messages re-sent by the API's outbox sweep (their API died mid-submit)"),
    // Workers: tasks
    finished: counter("agent_tasks_finished_total", "tasks finished by this worker, by final status (its result message published)", ["status"]),
    messages: counter("agent_worker_messages_total", "messages handled, by consumer loop and outcome", ["loop", "outcome"]),
    retries: counter("agent_task_retries_total", "failed attempts that will be retried"),
    handBacks: counter("agent_task_hand_backs_total", "tasks handed back to the broker unfinished (shutdown)"),
    deadLetters: counter("agent_dead_letters_total", "messages set aside: kind=broker read from %DLQ%, kind=poison not processable", ["kind"]),
    stalled: counter("agent_stalled_republished_total", "request messages of stalled tasks re-published"),
    queueWait: histogram("agent_task_queue_wait_seconds", "accepted to first claim (both on Redis's clock)", TASK_BUCKETS),
    run: histogram("agent_task_run_seconds", "one run of the agent, by outcome", TASK_BUCKETS, ["outcome"]),
    e2e: histogram("agent_task_end_to_end_seconds", "accepted to finished (result published), for tasks finished by this worker", TASK_BUCKETS, ["status"]),
    inflight: gauge("agent_worker_tasks_in_flight", "messages being handled now, by consumer loop", ["loop"]),
    capacity: gauge("agent_worker_capacity", "messages this worker handles at once (WORKER_CONCURRENCY)", ["loop"]),
    // Dependencies
    // Observed ~10 times per task: a histogram of ours, cheaper per observation (./call-histogram.ts).
    redis: new CallHistogram("agent_redis_command_duration_seconds", "one Redis command or Lua script (script:<name>), answered or not", CALL_BUCKETS, "command", registry),
    redisErrors: counter("agent_redis_errors_total", "Redis commands that failed, by kind (timeout, error)", ["command", "kind"]),
    mq: new CallHistogram("agent_rocketmq_request_duration_seconds", "one RocketMQ request: send (gRPC), send_batch (remoting), ack, change_invisible", CALL_BUCKETS, "op", registry),
    mqErrors: counter("agent_rocketmq_errors_total", "RocketMQ requests that failed", ["op"]),
    lag: new prom.Gauge({
      name: "agent_rocketmq_consumer_lag_messages",
      help: "messages stored but not yet received by the group (broker offset - consumer offset), read from the brokers (API only)",
      labelNames: ["group", "topic"],
      registers,
      async collect() {
        await lagReader?.(this);
      },
    }),
    lagErrors: counter("agent_rocketmq_consumer_lag_errors_total", "reads of the consumer lag that failed"),
    // LLM
    llmCalls: counter("agent_llm_calls_total", "LLM calls, by model and outcome", ["model", "outcome"]),
    llmTokens: counter("agent_llm_tokens_total", "tokens reported by the LLM, by model and direction (in: prompt, out: completion)", ["model", "direction"]),
    llmSeconds: histogram("agent_llm_call_duration_seconds", "one LLM call", LLM_BUCKETS, ["model"]),
    // Tracing
    spansLost: counter("agent_trace_spans_lost_total", "finished spans that never reached the collector: export_failed (the collector refused or did not answer), queue_full (more than 2048 waiting)", ["reason"]),
  };
}

type LagGauge = Gauge<string>;
/** Fills the lag gauge at scrape time (lib/observe/lag.ts); none: the gauge stays empty. */
let lagReader: ((g: LagGauge) => Promise<void>) | undefined;
export function setLagReader(r: ((g: LagGauge) => Promise<void>) | undefined) {
  lagReader = r;
}

export type Metrics = ReturnType<typeof build>;
let M: Metrics | undefined;

/** Builds the registry (loads prom-client). Safe to call twice. */
export async function initMetrics(): Promise<Metrics> {
  M ??= build(await import("prom-client"));
  return M;
}

/** The registry's metrics, or undefined while metrics are off. */
export const metrics = (): Metrics | undefined => M;

/** The exposition: Prometheus text format. Runs the gauges' collect callbacks (the consumer lag). */
export async function exposition(): Promise<{ contentType: string; body: string }> {
  if (!M) return { contentType: "text/plain; charset=utf-8", body: "" };
  return { contentType: M.registry.contentType, body: await M.registry.metrics() };
}

// Label children cached per metric: prom-client hashes the label set on every labels() call.
type Child = { inc(n?: number): void; dec(n?: number): void; observe(v: number): void; set(v: number): void };
const children = new WeakMap<object, Map<string, Child>>();
function child(metric: Counter | Histogram | Gauge, ...values: string[]) {
  let byLabels = children.get(metric);
  if (!byLabels) children.set(metric, (byLabels = new Map()));
  const key = values.length === 1 ? values[0]! : values.join("\u0000");
  let c = byLabels.get(key);
  if (!c) byLabels.set(key, (c = (metric as Counter).labels(...values) as never));
  return c;
}

/** Times a promise as one Redis call; counts its failure. The promise is returned untouched. */
export function timeRedis<T>(command: string, p: Promise<T>): Promise<T> {
  if (!M) return p;
  const m = M;
  const t0 = performance.now();
  p.then(
    () => m.redis.observe(command, (performance.now() - t0) / 1000),
    (e) => {
      m.redis.observe(command, (performance.now() - t0) / 1000);
      child(m.redisErrors, command, (e as Error)?.name === "RedisTimeoutError" ? "timeout" : "error").inc();
    },
  );
  return p;
}

/** Times a promise as one RocketMQ request; counts its failure. The promise is returned untouched. */
export function timeMq<T>(op: "send" | "send_batch" | "ack" | "change_invisible", p: Promise<T>): Promise<T> {
  if (!M) return p;
  const m = M;
  const t0 = performance.now();
  const done = () => m.mq.observe(op, (performance.now() - t0) / 1000);
  p.then(done, () => {
    done();
    child(m.mqErrors, op).inc();
  });
  return p;
}

/** A POST /tasks answered with `status`; `reason`: the error code of a refusal. */
export function countSubmit(status: number, reason?: string) {
  if (!M) return;
  M.submitted.inc();
  if (status === 202) M.accepted.inc();
  else child(M.rejected, reason ?? `http_${status}`).inc();
}

export function countOutboxResent() {
  M?.outboxResent.inc();
}

export function countStalledRepublished() {
  M?.stalled.inc();
}

/** One LLM call: its outcome, duration and the tokens the server reported. */
export function countLlmCall(model: string, outcome: string, seconds: number, usage?: { prompt_tokens?: number; completion_tokens?: number }) {
  if (!M) return;
  child(M.llmCalls, model, outcome).inc();
  child(M.llmSeconds, model).observe(seconds);
  const tin = Number(usage?.prompt_tokens);
  const tout = Number(usage?.completion_tokens);
  if (tin > 0) child(M.llmTokens, model, "in").inc(tin);
  if (tout > 0) child(M.llmTokens, model, "out").inc(tout);
}

/** Spans the tracing exporter lost (lib/observe/tracing.ts). */
export function countSpansLost(reason: "export_failed" | "queue_full", n: number) {
  if (M && n > 0) child(M.spansLost, reason).inc(n);
}

export { child as labelled };
