// A task whose message RocketMQ dead-letters (retryMaxTimes + 1 deliveries without an ack) ends
// `failed` with the reason and a failure result, through the workers' reading of %DLQ%<group>.
// The group here allows one delivery (MQ_RETRY_MAX_TIMES=0), and a bare consumer plays a worker
// that took the message and never finished it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { silentLogger } from "../lib/log.ts";
import { closeClient, createConsumer, Publisher } from "../lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { collectResults } from "./support/results.ts";

let ns: TestNamespace;
let redis: ReturnType<typeof createRedis>;
let publisher: Publisher;
let store: TaskStore;
let results: Awaited<ReturnType<typeof collectResults>>;

beforeAll(async () => {
  ns = await createNamespace({ env: { MQ_RETRY_MAX_TIMES: "0" } });
  redis = createRedis(ns.config, silentLogger);
  await connectRedis(redis);
  publisher = new Publisher(ns.config, silentLogger, [ns.requestTopic]);
  store = new TaskStore(redis, ns.config.TASK_TTL_SECONDS, ns.redisPrefix);
  results = await collectResults(ns);
});
afterAll(async () => {
  await stopAll();
  await results?.close();
  await publisher?.close();
  if (redis) await closeRedis(redis);
  await ns?.cleanup();
});

test("a dead-lettered task ends failed with the reason and a failure result", async () => {
  const { task_id } = await new TaskService(ns.config, store, publisher, silentLogger).submit({ user_id: "dlq", content: "lost cause" });
  // First delivery: taken and never acked, as by a worker that kept failing underneath.
  const bare = createConsumer(ns.config, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
  await bare.startup();
  let taken = false;
  for (let i = 0; i < 10 && !taken; i++)
    for (const m of await bare.receive(8, 10_000))
      if (m.keys[0] === task_id) {
        await bare.changeInvisibleDuration(m, 1_000);
        taken = true;
      }
  await closeClient(bare, silentLogger);
  expect(taken).toBe(true);

  // The next delivery would be the second: the proxy moves it to %DLQ%<group>, where the worker reads it.
  const w = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0" });
  await waitFor(async () => (await store.get(task_id))?.status === "failed", 60_000, "task failed through the DLQ");
  expect((await store.get(task_id))?.error).toContain("dead-lettered");
  expect(w.logs("task running", task_id).length).toBe(0);
  await waitFor(() => results.for(task_id).length > 0, 15_000, "failure result");
  expect(results.for(task_id)[0]!.body).toMatchObject({ task_id, status: "failed", result: null });
  expect((await store.deadLetters()).some((d) => d.task_id === task_id)).toBe(true);
  expect(await w.stop()).toBe(0);
}, 120_000);
