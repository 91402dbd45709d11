// A task whose message RocketMQ dead-letters (retryMaxTimes + 1 deliveries without an ack) ends
// `failed` with the reason and a failure result, through the workers' reading of %DLQ%<group>;
// a dead letter of a finished task, or of one another worker runs under a live lease, is only acked.
// The group here allows one delivery (MQ_RETRY_MAX_TIMES=0), and a bare consumer plays a worker
// that took the message and never finished it.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { silentLogger } from "../lib/log.ts";
import { ACTION, encodeJson, REQUEST_TAG } from "../lib/model.ts";
import { send } from "../lib/scripts.ts";
import { TaskStore } from "../lib/store.ts";
import { CancelService } from "../lib/tasks/cancel.ts";
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

/**
 * A task whose message RocketMQ dead-letters while the result topic refuses writes (read-only): a
 * worker fails the task, and `whileRefused` runs once its failure result's publish was refused, before
 * the topic takes writes again.
 */
async function deadLetterWhileResultsRefused(content: string, whileRefused: (w: Service) => Promise<void> = async () => {}) {
  const { ns } = sys;
  const admin = ns.admin();
  const topic = ns.resultTopic;
  const queues = (await admin.getTopicConfig((await admin.brokers())[0]!.master, topic))!.readQueueNums;
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content });
  await takeAndDrop(ns, task_id);
  await admin.createTopic({ topic, queues, perm: 4, messageType: "NORMAL" }); // 4: read only
  let w: Service;
  try {
    w = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0" });
    await sys.waitStatus(task_id, "failed", 60_000);
    const refused = () => w.logs("result not published; only the publish is retried, the message kept in hand", task_id);
    await waitFor(() => refused().length > 0, 30_000, () => `the refused publish\n${w.raw.slice(-20).join("\n")}`);
    await whileRefused(w);
  } finally {
    await admin.createTopic({ topic, queues, perm: 6, messageType: "NORMAL" });
  }
  return { task_id, w };
}

test("a dead-lettered task's failure result is published once the result topic takes writes again", async () => {
  // The result topic refuses writes (read-only) when the dead letter is handled: the publish is
  // retried with the message in hand, and the message acked only once the result is out. (It was
  // logged and acked, the result lost: the task failed and no consumer ever heard of it.)
  const { results } = sys;
  const { task_id, w } = await deadLetterWhileResultsRefused("its result refused at first");
  await waitFor(() => results.for(task_id).length > 0, 60_000, () => `the failure result\n${w.raw.slice(-20).join("\n")}`);
  expect(results.for(task_id)[0]!.body).toMatchObject({ task_id, status: "failed", result: null });
  expect(await w.stop()).toBe(0);
  expect(w.logs("task failed: its message was dead-lettered", task_id).length).toBe(1);
}, 150_000);

test("a dead-lettered task's failure result still unpublished when its worker stops is published by the next worker", async () => {
  // The result topic refuses writes while the dead letter is handled, and the worker is stopped
  // meanwhile: it hands the message back. The next worker's delivery publishes the recorded failure.
  // (Before: the next delivery found the task failed, acked it, and the result was never published.)
  const { ns, results } = sys;
  const { task_id } = await deadLetterWhileResultsRefused("its worker stopped before the result was out", async (first) => {
    expect(await first.stop()).toBe(0);
  });
  expect(results.for(task_id)).toEqual([]);
  const next = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0" });
  // The proxy caches the read-only route for up to 20 s and the client its own for 30 s: the first
  // publishes may still be refused, and are retried.
  await waitFor(() => results.for(task_id).length > 0, 150_000, () => `the failure result\n${next.raw.slice(-20).join("\n")}`);
  expect(results.for(task_id)[0]!.body).toMatchObject({ task_id, status: "failed", result: null });
  expect((await sys.store.get(task_id))?.error).toContain("dead-lettered");
  expect(next.logs("task running", task_id).length).toBe(0);
  expect(await next.stop()).toBe(0);
  expect((await sys.store.deadLetters()).filter((d) => d.task_id === task_id).length).toBe(1);
}, 270_000);

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

test("a dead letter of a task whose cancel got 202 and whose worker died ends canceled, its canceled result published at once", async () => {
  // A worker took the message, claimed the task and died; the client's cancel came while its lease
  // was live (202, `cancel_at` set, the notice heard by nobody); the lease ran out; the message's next
  // delivery is dead-lettered. The dead letter publishes the canceled result now, without running the
  // agent: not after STALLED_AFTER_MS (10 min here, so the stalled-task re-send cannot be what passes).
  // The dead worker is played by takeAndDrop (the message) and TaskStore.claim (the task, short lease);
  // the cancel is the one POST /tasks/:id/cancel runs (CancelService: "accepted" is its 202).
  const { ns, store, results } = sys;
  const { task_id } = await sys.tasks.submit({ user_id: "dlq", content: "canceled, then dead-lettered" });
  await takeAndDrop(ns, task_id);
  const LEASE_MS = 2_000;
  expect((await store.claim(task_id, "dead-worker", LEASE_MS, "dlq")).kind).toBe("claimed");
  const asked = await new CancelService(ns.config, store, sys.publisher, silentLogger).cancel(task_id);
  expect(asked.kind).toBe("accepted");
  expect((await store.get(task_id))?.status).toBe("running"); // asked, not canceled: it runs under a live lease
  // The lease runs out on Redis's clock (the one finish.lua "dead" compares it with).
  const key = store.keys.task(task_id);
  const redisNow = async () => {
    const [s, us] = await send<[string, string]>(sys.redis, key, ["TIME"]);
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  };
  expect(await send(sys.redis, key, ["HGET", key, "cancel_at"])).toBeTruthy();
  await waitFor(async () => Number(await send(sys.redis, key, ["HGET", key, "lease_until"])) < (await redisNow()), 30_000, "the dead worker's lease to run out");

  const w = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0", STALLED_AFTER_MS: "600000" });
  // Within 60 s of the worker's start (measured: about 5 s), a tenth of STALLED_AFTER_MS.
  await waitFor(() => results.for(task_id).length > 0, 60_000, () => `the canceled result\n${w.raw.slice(-20).join("\n")}`);
  expect(results.for(task_id)[0]!.body).toMatchObject({ task_id, status: "canceled", result: null });
  await sys.waitStatus(task_id, "canceled", 10_000);
  expect(await w.stop()).toBe(0);
  expect(w.logs("task running", task_id).length).toBe(0);
  expect((await store.get(task_id))?.status).toBe("canceled");
  await results.settled();
  expect(results.for(task_id).map((r) => r.body.status)).toEqual(["canceled"]);
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
