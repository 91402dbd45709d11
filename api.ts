// HTTP API entry: `bun api.ts`. Builds the parts from config, serves, sweeps the outbox, shuts down on a signal.
import { createApp } from "./lib/http/app.ts";
import { loadConfig } from "./lib/config.ts";
import { createLogger } from "./lib/log.ts";
import { Publisher } from "./lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "./lib/redis.ts";
import { API_SHUTDOWN_DEADLINE_MS, handleSignals, shuttingDown } from "./lib/shutdown.ts";
import { TaskStore } from "./lib/store.ts";
import { refusedMayRun, TaskService } from "./lib/submit.ts";
import { closeTaskNotices } from "./lib/tasks/notices.ts";
import { journalPath, TombstoneJournal } from "./lib/tasks/tombstone-journal.ts";
import { resolveAuthMode, warnIfNoKeys } from "./lib/http/auth.ts";
import { exitOnMqAuthProblem } from "./lib/mq/auth-error.ts";
import { ApiKeys } from "./lib/tenancy/api-keys.ts";
import { RateLimiter } from "./lib/tenancy/rate-limit.ts";
import { startObservability } from "./lib/observe/index.ts";

async function main() {
  const cfg = loadConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, format: cfg.LOG_FORMAT }, { service: "api" });
  const auth = resolveAuthMode(cfg, log);
  // Before the app is built: it asks once whether metrics or tracing are on (lib/http/observe.ts).
  const obs = await startObservability(cfg, "api", log);
  const redis = createRedis(cfg, log);
  // The result topic too: POST /tasks/:id/cancel publishes the canceled result of a task that never ran.
  const publisher = new Publisher(cfg, log, [cfg.MQ_TOPIC_REQUEST, cfg.MQ_TOPIC_RESULT]);
  const store = TaskStore.fromConfig(redis, cfg);
  const journal = journalPath(cfg);
  const tasks = new TaskService(cfg, store, publisher, log, journal ? new TombstoneJournal(journal, log) : undefined);
  let app: ReturnType<typeof createApp> | undefined;
  let sweeper: ReturnType<typeof setInterval> | undefined;

  handleSignals(log, () => [
    ["stop sweeper", () => clearInterval(sweeper)],
    // Before the server stops: it waits for open requests, and a wait or an event stream would hold it.
    ["end waits and event streams", () => closeTaskNotices(redis)],
    ["stop http", () => app?.stop()],
    // With Redis still open: tombstones of tasks told 503, and sent marks of tasks told 202, that Redis
    // has not taken yet.
    ["write pending tombstones and sent marks", () => tasks.settlePending()],
    ["close rocketmq", () => publisher.close()],
    ["close redis", () => closeRedis(redis)],
    ["flush telemetry", () => obs.stop()],
  ], API_SHUTDOWN_DEADLINE_MS);
  // Connect only once a signal can stop us (as worker.ts): with Redis or RocketMQ away these waits
  // take seconds (the producer's start up to 3 × MQ_REQUEST_TIMEOUT_MS), and a SIGTERM meanwhile
  // must still shut down cleanly (exit 0).
  if (!(await connectRedis(redis))) log.warn("Redis not reachable yet; POST /tasks answers 503 until it is");
  await publisher.start().catch((e) => {
    exitOnMqAuthProblem(e, cfg, log);
    log.warn("RocketMQ not reachable yet; POST /tasks answers 503 until it is", { error: e });
  });
  // A signal came during those waits: its shutdown is under way; starting more would race it.
  if (shuttingDown()) return;
  // Before the first outbox sweep, which would send the tasks of those tombstones.
  await tasks.recoverTombstones();
  const tenancy = { auth, apiKeys: new ApiKeys(redis, cfg.REDIS_PREFIX), limiter: new RateLimiter(redis, cfg.REDIS_PREFIX) };
  await warnIfNoKeys(auth, tenancy.apiKeys, log);
  if (shuttingDown()) return; // never open the port mid-shutdown
  app = createApp({ cfg, store, tasks, log, tenancy }).listen({ port: cfg.API_PORT, hostname: cfg.API_HOST });
  sweeper = setInterval(() => tasks.sweepOutbox().catch(() => {}), 15_000);
  log.info("api listening", { url: `http://${cfg.API_HOST}:${app.server?.port}`, docs: "/docs", auth });
  const refused = refusedMayRun(cfg);
  if (refused) log.warn(refused);
}

main().catch((e) => {
  // A start-up step cut short by the shutdown closing its client: that shutdown decides the exit.
  if (shuttingDown()) return;
  console.error("api failed to start:", e);
  process.exit(1);
});
