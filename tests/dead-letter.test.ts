// A task whose message RocketMQ dead-letters (retryMaxTimes + 1 deliveries without an ack) ends
// `failed` with the reason and a failure result, through the workers' reading of %DLQ%<group>.
// The group here allows one delivery (MQ_RETRY_MAX_TIMES=0), and a bare consumer plays a worker
// that took the message and never finished it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { silentLogger } from "../lib/log.ts";
import { closeClient, createConsumer } from "../lib/mq.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem({ env: { MQ_RETRY_MAX_TIMES: "0" } });
}, 60_000);
afterAll(() => sys?.close(), 60_000);

test("a dead-lettered task ends failed with the reason and a failure result", async () => {
  const { ns, store, results } = sys;
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content: "lost cause" });
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
  await sys.waitStatus(task_id, "failed", 60_000);
  expect((await store.get(task_id))?.error).toContain("dead-lettered");
  expect(w.logs("task running", task_id).length).toBe(0);
  await waitFor(() => results.for(task_id).length > 0, 15_000, "failure result");
  expect(results.for(task_id)[0]!.body).toMatchObject({ task_id, status: "failed", result: null });
  expect((await store.deadLetters()).some((d) => d.task_id === task_id)).toBe(true);
  expect(await w.stop()).toBe(0);
}, 120_000);
