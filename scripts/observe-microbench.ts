// `bun scripts/observe-microbench.ts off|metrics|tracing|tracing:<ratio> [--tasks N]`
// The CPU that the instrumentation itself adds per task, without servers: one task's calls into
// lib/observe as the API and a worker make them (the submit span, 5 Redis calls and a send on the API
// side; claim, agent run, result send, finish (the 5 spans of a task with submit), ack and 2 more
// Redis calls on the worker's), against already-settled promises, N times. Tracing exports to a local receiver
// (another process would be fairer; this one only drains the bodies), flushed every 100 / ratio tasks
// (~700 spans a batch, under the processor's queue of 2048) so that no span is dropped. Run each mode in its own process (the modules keep their state).
// docs/observability.md, "Overhead".
import { parseArgs } from "node:util";
import { countSubmit, initMetrics, timeRedis } from "../lib/observe/metrics.ts";
import { observeAgentRun, observeClaim, observeFinish, observeHandler, traceOf, tracedSend } from "../lib/observe/messaging.ts";
import { flushTracing, initTracing, inSpan, shutdownTracing } from "../lib/observe/tracing.ts";
import type { Claim } from "../lib/store.ts";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tasks: { type: "string", default: "30000" } } });
const mode = positionals[0] ?? "off";
const N = Number(values.tasks);
if (!/^(off|metrics|tracing(:(0(\.\d+)?|1))?)$/.test(mode) || !Number.isInteger(N) || N < 1) {
  console.error("usage: bun scripts/observe-microbench.ts off|metrics|tracing|tracing:<ratio> [--tasks N]");
  process.exit(2);
}
if (mode === "metrics") await initMetrics();
const receiver = mode.startsWith("tracing")
  ? Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async (r) => (await r.arrayBuffer(), new Response("{}")) })
  : undefined;
const ratio = Number(mode.split(":")[1] ?? 1);
if (receiver) await initTracing(`http://127.0.0.1:${receiver.port}`, "microbench", undefined, { ratio });
const flushEvery = Math.max(100, Math.round(100 / Math.max(ratio, 0.001)));

const settled = Promise.resolve(1);
const m = { topic: "req", tag: "ProfileGen", keys: ["k"], messageId: "m", properties: new Map<string, string>(), deliveryAttempt: 1 } as never;
const ctx = { cfg: { MQ_GROUP_AGENT: "g" }, settler: { ack: async () => {}, hide: async () => {} } } as never;
const handler = observeHandler("tasks", async (msg, c) => {
  await observeClaim(msg, "task", async () => ({ kind: "claimed", attempt: 1, waitedMs: 5 }) as Claim);
  await observeAgentRun(msg, async () => 1);
  await tracedSend({ topic: "res", traceParent: traceOf(msg), span: true }, async () => "id");
  await timeRedis("script:finish", settled);
  await observeFinish(msg, "done", async () => "written");
  await c.settler.ack(msg);
  return "done";
}, 64);

async function task() {
  await inSpan("submit", async (span) => {
    for (const c of ["script:hint", "script:create"]) await timeRedis(c, settled);
    await tracedSend({ topic: "req", traceParent: span }, async () => "id");
    for (const c of ["script:sent", "ZREM"]) await timeRedis(c, settled);
  }, { activate: false });
  countSubmit(202);
  await timeRedis("script:hint", settled);
  await handler(m, ctx, new AbortController().signal);
  await timeRedis("ZREM", settled);
}

for (let i = 0; i < 2_000; i++) await task(); // warm-up (JIT)
await flushTracing();
const c0 = process.cpuUsage();
for (let i = 1; i <= N; i++) {
  await task();
  if (receiver && i % flushEvery === 0) await flushTracing();
}
await flushTracing();
const c = process.cpuUsage(c0);
console.log(JSON.stringify({ mode, tasks: N, cpu_us_per_task: Number(((c.user + c.system) / N).toFixed(2)) }));
await shutdownTracing();
receiver?.stop(true);
process.exit(0);
