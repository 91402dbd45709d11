// Worker entry: `bun worker.ts`. Consumes MQ_TOPIC_REQUEST as MQ_GROUP_AGENT and runs the agent.
import { agentFromConfig } from "./lib/agent/index.ts";
import { deadLetterRisk, loadConfig } from "./lib/config.ts";
import { createLogger } from "./lib/log.ts";
import { startPeriodicGc } from "./lib/worker/gc.ts";
import { REQUEST_TAG } from "./lib/model.ts";
import { closeClient, createConsumer, Publisher } from "./lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "./lib/redis.ts";
import { handleSignals, shuttingDown } from "./lib/shutdown.ts";
import { TaskStore } from "./lib/store.ts";
import { deadLetterGroup, deadLetterTopic, delayGroup, delayTopic } from "./lib/provision.ts";
import { DELAY_LOOP_CONCURRENCY, forwardDue } from "./lib/worker/delayed.ts";
import { handleDeadLetter } from "./lib/worker/dead-letter.ts";
import { ConsumerLoop, workerShutdownBudgetMs } from "./lib/worker/loop.ts";
import { stalledCheckEveryMs, TaskService } from "./lib/submit.ts";
import { tenantSlotsFor } from "./lib/tenancy/fair-share.ts";
import { withTenantLimits } from "./lib/worker/tenant-limits.ts";
import { llmBudgetFor } from "./lib/tenancy/llm-budget.ts";
import { exitOnMqAuthProblem } from "./lib/mq/auth-error.ts";
import { deafAgentRisk, handleMessage } from "./lib/worker/handle.ts";
import { OpsRecorder } from "./lib/ops/recorder.ts";
import { WorkerAnnouncer } from "./lib/ops/workers.ts";
import { CancelWatch } from "./lib/worker/cancel-watch.ts";
import { observeHandler, startObservability } from "./lib/observe/index.ts";

async function main() {
  const cfg = loadConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, format: cfg.LOG_FORMAT }, { service: "worker" });
  // Metrics (WORKER_METRICS_PORT) and tracing first: the handlers below are wrapped only if they are on.
  const obs = await startObservability(cfg, "worker", log);
  const redis = createRedis(cfg, log);
  // The request topic too: stalled tasks are re-published there (TaskService.republishStalled).
  const publisher = new Publisher(cfg, log, [cfg.MQ_TOPIC_RESULT, cfg.MQ_TOPIC_REQUEST]);
  // A 5 s long poll (the proxy's minimum): shutdown waits at most that long for the last receive.
  const consumer = createConsumer(cfg, log, cfg.MQ_GROUP_AGENT, cfg.MQ_TOPIC_REQUEST, REQUEST_TAG, 5_000);
  // The fleet's LLM budget (LLM_RPM, LLM_TPM): every LLM call waits for its turn in Redis.
  const { agent, name } = agentFromConfig(cfg, log, llmBudgetFor(cfg, redis, log));
  const store = TaskStore.fromConfig(redis, cfg);
  // Tenants' concurrency limits with fair share (lib/tenancy/fair-share.ts, lib/worker/tenant-limits.ts).
  const slots = tenantSlotsFor(cfg, redis, publisher, store, log);
  // What runs and what finished, for the dashboard and `scripts/tasks.ts stats` (lib/ops/).
  const ops = new OpsRecorder(redis, store.keys);
  const announcer = new WorkerAnnouncer(redis, store.keys, () => ({ in_flight: ops.inFlight, capacity: cfg.WORKER_CONCURRENCY, finished: ops.finished }));
  // POST /tasks/:id/cancel reaches the run at once through Redis pub/sub (lib/worker/cancel-watch.ts).
  const cancels = new CancelWatch(redis, store.keys.cancelChannel, log);
  const loop = new ConsumerLoop(consumer, { cfg, store, publisher, agent, log, cancels },
    observeHandler("tasks", ops.wrap(withTenantLimits(handleMessage, slots)), cfg.WORKER_CONCURRENCY));
  // The workers' dead-letter topic, read through its own group (lib/worker/dead-letter.ts, lib/provision.ts).
  const dlqConsumer = createConsumer(cfg, log, deadLetterGroup(cfg.MQ_GROUP_AGENT), deadLetterTopic(cfg.MQ_GROUP_AGENT), "*", 5_000);
  const dlqLog = log.child({ loop: "dead-letters" });
  const dlqLoop = new ConsumerLoop(dlqConsumer, { cfg: { ...cfg, WORKER_CONCURRENCY: 16 }, store, publisher, agent, log: dlqLog },
    observeHandler("dead-letters", ops.count(handleDeadLetter), 16));
  // Delayed tasks: due messages of the delay topic, forwarded to the request topic (lib/worker/delayed.ts).
  const delayConsumer = createConsumer(cfg, log, delayGroup(cfg.MQ_GROUP_AGENT), delayTopic(cfg.MQ_TOPIC_REQUEST), REQUEST_TAG, 5_000);
  const delayLoop = new ConsumerLoop(delayConsumer, {
    cfg: { ...cfg, WORKER_CONCURRENCY: DELAY_LOOP_CONCURRENCY }, store, publisher, agent, log: log.child({ loop: "delayed" }),
  }, observeHandler("delayed", forwardDue, DELAY_LOOP_CONCURRENCY));

  const tasks = new TaskService(cfg, store, publisher, log);
  const reaper = setInterval(() => void tasks.republishStalled(), stalledCheckEveryMs(cfg));
  const tenancyReaper = setInterval(() => void slots.reap(), 5_000);

  handleSignals(log, () => [
    ["stop stalled-task checks", () => (clearInterval(reaper), clearInterval(tenancyReaper))],
    ["stop consumer loops", () =>
      Promise.all([loop.stop(cfg.SHUTDOWN_TIMEOUT_MS), dlqLoop.stop(cfg.SHUTDOWN_TIMEOUT_MS), delayLoop.stop(cfg.SHUTDOWN_TIMEOUT_MS)]).then(() => {})],
    // At most 2 s: with Redis away these are lost (the announcement expires by itself).
    ["withdraw the announcement, flush counters", () => Promise.race([Promise.all([announcer.stop(), ops.stop()]), Bun.sleep(2_000)]).then(() => {})],
    ["close consumers", () =>
      Promise.all([closeClient(consumer, log), closeClient(dlqConsumer, log), closeClient(delayConsumer, log)]).then(() => {})],
    ["close producer", () => publisher.close()],
    ["close cancel subscriber", () => cancels.close()],
    ["close redis", () => closeRedis(redis)],
    ["stop metrics, flush spans", () => obs.stop()],
  ], workerShutdownBudgetMs(cfg));
  // Connect only once a signal can stop us: with RocketMQ or Redis unreachable these waits take
  // seconds, and a SIGINT meanwhile must still shut down cleanly (exit 0).
  if (!(await connectRedis(redis))) log.warn("Redis not reachable yet; tasks wait until it is");
  await publisher.start().catch((e) => {
    exitOnMqAuthProblem(e, cfg, log);
    log.warn("RocketMQ producer not started yet; will retry on first result", { error: e });
  });
  // A signal came during those waits: its shutdown is under way; starting the loops would race it.
  if (shuttingDown()) return;

  void cancels.start();
  startPeriodicGc(cfg.WORKER_GC_INTERVAL_MS, cfg.WORKER_GC_MIN_RSS_MIB);
  await loop.start();
  // A signal while the consumer retried its start ends that wait: the shutdown is under way.
  if (shuttingDown()) return;
  ops.start();
  announcer.start();
  // Not awaited: a dead-letter topic that is missing (not provisioned) must not keep tasks from running.
  void dlqLoop.start();
  // The same for the delay topic (a deployment provisioned before delayed tasks existed lacks it).
  void delayLoop.start();
  for (const risk of [deafAgentRisk(cfg), deadLetterRisk(cfg)]) if (risk) log.warn(risk);
  log.info("worker running", {
    group: cfg.MQ_GROUP_AGENT, topic: cfg.MQ_TOPIC_REQUEST, concurrency: cfg.WORKER_CONCURRENCY, agent: name,
  });
}

main().catch((e) => {
  // A start-up step cut short by the shutdown closing its client: that shutdown decides the exit.
  if (shuttingDown()) return;
  console.error("worker failed to start:", e);
  process.exit(1);
});
