// HTTP API entry: `bun api.ts`. Builds the parts from config, serves, sweeps the outbox, shuts down on a signal.
import { createApp } from "./lib/app.ts";
import { loadConfig } from "./lib/config.ts";
import { createLogger } from "./lib/log.ts";
import { Publisher } from "./lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "./lib/redis.ts";
import { handleSignals } from "./lib/shutdown.ts";
import { TaskStore } from "./lib/store.ts";
import { TaskService } from "./lib/submit.ts";

async function main() {
  const cfg = loadConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, format: cfg.LOG_FORMAT }, { service: "api" });
  const redis = createRedis(cfg, log);
  if (!(await connectRedis(redis))) log.warn("Redis not reachable yet; POST /tasks answers 503 until it is");
  const publisher = new Publisher(cfg, log, [cfg.MQ_TOPIC_REQUEST]);
  await publisher.start().catch((e) => log.warn("RocketMQ not reachable yet; POST /tasks answers 503 until it is", { error: e }));
  const store = TaskStore.fromConfig(redis, cfg);
  const tasks = new TaskService(cfg, store, publisher, log);
  const app = createApp({ cfg, store, tasks, log }).listen({ port: cfg.API_PORT, hostname: cfg.API_HOST });
  const sweeper = setInterval(() => tasks.sweepOutbox().catch(() => {}), 15_000);
  log.info("api listening", { url: `http://${cfg.API_HOST}:${app.server?.port}`, docs: "/docs" });

  handleSignals(log, () => [
    ["stop sweeper", () => clearInterval(sweeper)],
    ["stop http", () => app.stop()],
    ["close rocketmq", () => publisher.close()],
    ["close redis", () => closeRedis(redis)],
  ], 15_000);
}

main().catch((e) => {
  console.error("api failed to start:", e);
  process.exit(1);
});
