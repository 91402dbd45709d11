// The in-process side of a worker test: a namespace, its Redis store, a TaskService that submits as
// the API does, and a collector of the result topic. Workers run as child processes (processes.ts).
import { silentLogger } from "../../lib/log.ts";
import { Publisher } from "../../lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "../../lib/redis.ts";
import { TaskStore } from "../../lib/store.ts";
import { TaskService } from "../../lib/submit.ts";
import { createNamespace } from "../helpers.ts";
import { stopAll, waitFor } from "./processes.ts";
import { collectResults } from "./results.ts";

export async function testSystem(opts: Parameters<typeof createNamespace>[0] = {}) {
  const ns = await createNamespace(opts);
  const cfg = ns.config;
  const redis = createRedis(cfg, silentLogger);
  await connectRedis(redis);
  const publisher = new Publisher(cfg, silentLogger, [cfg.MQ_TOPIC_REQUEST]);
  await publisher.start();
  const store = TaskStore.fromConfig(redis, cfg);
  const tasks = new TaskService(cfg, store, publisher, silentLogger);
  const results = await collectResults(ns);
  const statusOf = async (id: string) => (await store.get(id))?.status;
  return {
    ns,
    redis,
    publisher,
    store,
    tasks,
    results,
    statusOf,
    waitStatus: (id: string, status: string, ms = 60_000) =>
      waitFor(async () => (await statusOf(id)) === status, ms, `task ${id} to be ${status}`),
    /** Stops leftover workers, closes the clients, removes the namespace. */
    async close() {
      await stopAll();
      await results.close();
      await publisher.close();
      await closeRedis(redis);
      await ns.cleanup();
    },
  };
}
export type TestSystem = Awaited<ReturnType<typeof testSystem>>;
