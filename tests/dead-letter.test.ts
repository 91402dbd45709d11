// A task whose message RocketMQ dead-letters (retryMaxTimes + 1 deliveries without an ack) ends
// `failed` with the reason and a failure result, through the workers' reading of %DLQ%<group>;
// a dead letter of a finished task, or of one another worker runs under a live lease, is only acked.
// The group here allows one delivery (MQ_RETRY_MAX_TIMES=0), and a bare consumer plays a worker
// that took the message and never finished it.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { ACTION, encodeJson, REQUEST_TAG } from "../lib/model.ts";
import { TaskStore } from "../lib/store.ts";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { takeAndDrop } from "./support/stuck-worker.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem({ env: { MQ_RETRY_MAX_TIMES: "0" } });
}, 60_000);
afterEach(async () => {
  expect(await stopAll()).toBe(0);
});
afterAll(() => sys?.close(), 60_000);


const copyOf = (task_id: string, content: string) =>
  sys.publisher.send({ topic: sys.ns.requestTopic, tag: REQUEST_TAG, key: task_id, body: encodeJson({ task_id, user_id: "dlq", payload: content, action: ACTION }) });
const SKIPPED = "dead-lettered copy of a task that is finished or running elsewhere: acked";

test("a dead-lettered task ends failed with the reason and a failure result", async () => {
  const { ns, store, results } = sys;
  void ns;
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content: "lost cause" });
  // First delivery: taken and never acked, as by a worker that kept failing underneath.
  await takeAndDrop(sys.ns, task_id);

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

test("a dead letter of a finished task is acked and changes nothing", async () => {
  const a = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "0" });
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content: "finished first" });
  await sys.waitStatus(task_id, "done", 60_000);
  expect(await a.stop()).toBe(0);
  // A late copy of its message (a producer retry, an outbox re-send) is dead-lettered.
  await copyOf(task_id, "finished first");
  await takeAndDrop(sys.ns, task_id);
  const b = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "0" });
  await b.waitForLog(SKIPPED, 60_000, task_id);
  expect(await b.stop()).toBe(0);
  expect((await sys.store.get(task_id))?.status).toBe("done");
  expect((await sys.store.deadLetters()).some((d) => d.task_id === task_id)).toBe(false);
  await sys.results.settled();
  expect(sys.results.for(task_id).map((r) => r.body.status)).toEqual(["done"]);
}, 120_000);

test("a dead letter of a task another worker runs under a live lease is acked; the run finishes", async () => {
  const w = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "30000", MQ_INVISIBLE_MS: "10000" });
  await w.waitForLog("worker running");
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content: "still running" });
  await w.waitForLog("task running", 30_000, task_id);
  // A copy arrives while it runs: hidden until the lease ends (busy), its next delivery is dead-lettered.
  await copyOf(task_id, "still running");
  await w.waitForLog(SKIPPED, 60_000, task_id);
  expect((await sys.store.get(task_id))?.status).toBe("running");
  await sys.waitStatus(task_id, "done", 60_000);
  expect(await w.stop()).toBe(0);
  expect(w.logs("task running", task_id).length).toBe(1);
  expect((await sys.store.deadLetters()).some((d) => d.task_id === task_id)).toBe(false);
  await sys.results.settled();
  expect(sys.results.for(task_id).map((r) => r.body.status)).toEqual(["done"]);
}, 150_000);

test("the dead-letters list keeps the newest 10 000 entries", async () => {
  // Through TaskStore, on a list of its own (its own key prefix): the cap is the README's promise.
  const capped = new TaskStore(sys.redis, 3600, `${sys.ns.redisPrefix}cap:`);
  await Promise.all(Array.from({ length: 10_000 }, (_, i) => capped.deadLetter({ reason: `old ${i}`, body: "", at: "t" })));
  for (const r of ["new 1", "new 2", "new 3"]) await capped.deadLetter({ reason: r, body: "", at: "t" });
  const all = await capped.deadLetters(20_000);
  expect(all.length).toBe(10_000);
  expect(all.slice(0, 3).map((d) => d.reason)).toEqual(["new 3", "new 2", "new 1"]);
});
