// README "Guarantees" that need a run to outlast its lease, or a worker to stop at the worst moment:
// - long runs: the heartbeat extends the message's invisibility and the Redis lease;
// - a worker that lost its lease aborts its run;
// - finishing: the result is published first, then `done`, then the ack, so a crash between publish
//   and `done` runs the task again and puts a second result on the result topic.
// Workers are child processes (`bun worker.ts`); statuses are read with TaskStore.get, results from
// the result topic. Short settings: MQ_INVISIBLE_MS=10000 (its minimum).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { privateRedis } from "./support/redis-server.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem();
}, 60_000);
afterEach(async () => {
  expect(await stopAll()).toBe(0); // a test that leaves a worker running fails here
});
afterAll(() => sys?.close(), 60_000);

const tail = (s: Service) => s.raw.slice(-30).join("\n");

describe("long runs", () => {
  test("a run 2.5 x longer than MQ_INVISIBLE_MS: no redelivery, no second claim, one run, one result", async () => {
    // Without the invisibility extended, the message would come back after 10 s and be logged as
    // "running elsewhere"; without the lease extended, the stalled-task check (STALLED_AFTER_MS=1 s past
    // the lease) would re-publish it and a copy would claim the expired lease: a second run.
    const w = new Service("worker.ts", { ...sys.ns.env, MQ_INVISIBLE_MS: "10000", AGENT_DELAY_MS: "25000", STALLED_AFTER_MS: "1000" });
    await w.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "long", content: "a long run" });
    await sys.waitStatus(task_id, "done", 90_000);
    expect(await w.stop()).toBe(0);
    expect(w.logs("task running", task_id).length, tail(w)).toBe(1);
    expect(w.logs("task is running elsewhere: message hidden until its lease ends", task_id).length, tail(w)).toBe(0);
    expect(w.logs("stalled task re-published", task_id).length, tail(w)).toBe(0);
    expect((await sys.store.get(task_id))?.attempts).toBe(1);
    await sys.results.settled();
    expect(sys.results.for(task_id).length).toBe(1);
  }, 120_000);

  test("a worker that lost its lease (paused past it while another took the task) aborts its run", async () => {
    const env = { ...sys.ns.env, MQ_INVISIBLE_MS: "10000" };
    const a = new Service("worker.ts", { ...env, AGENT_DELAY_MS: "60000" });
    await a.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "lease", content: "lose the lease" });
    await a.waitForLog("task running", 30_000, task_id);
    a.proc.kill("SIGSTOP"); // frozen: no heartbeat, so the message comes back and the lease runs out
    const b = new Service("worker.ts", { ...env, AGENT_DELAY_MS: "2000" });
    try {
      await b.waitForLog("task running", 60_000, task_id);
    } finally {
      a.proc.kill("SIGCONT");
    }
    // A's next heartbeat finds the claim gone and aborts the 60 s run.
    await waitFor(() => a.logs("task abandoned: another worker holds its claim", task_id).length > 0, 30_000,
      () => `worker A to abandon its run\n${tail(a)}`);
    await sys.waitStatus(task_id, "done", 60_000);
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
    expect(a.logs("task done", task_id).length).toBe(0);
    expect(b.logs("task done", task_id).length).toBe(1);
    expect((await sys.store.get(task_id))?.attempts).toBe(2);
    await sys.results.settled();
    expect(sys.results.for(task_id).length).toBe(1);
  }, 180_000);
});

describe("finishing: result, then done, then ack", () => {
  test("a crash after the result was published and before done: the task runs again and a second result goes out", async () => {
    // Redis of its own, so its writes can be paused (CLIENT PAUSE WRITE) without touching the shared one.
    const redis = await privateRedis();
    const own = await testSystem({ env: { REDIS_URL: redis.url } });
    const admin = await redis.client();
    try {
      const env = { ...own.ns.env, MQ_INVISIBLE_MS: "10000", AGENT_DELAY_MS: "3000" };
      const a = new Service("worker.ts", env);
      await a.waitForLog("worker running");
      const { task_id } = await own.tasks.submit({ user_id: "crash", content: "between publish and done" });
      await own.waitStatus(task_id, "running", 30_000);
      // Writes (and scripts) now wait; reads still answer. The run ends, its result is sent, and
      // marking it done waits on Redis.
      await admin.sendCommand(["CLIENT", "PAUSE", "120000", "WRITE"]);
      await waitFor(() => own.results.for(task_id).length > 0, 60_000, () => `the result message\n${tail(a)}`);
      expect((await own.store.get(task_id))?.status).toBe("running"); // published before done
      a.proc.kill("SIGKILL"); // the crash between publish and done
      await a.exited;
      await admin.sendCommand(["CLIENT", "UNPAUSE"]);
      // Never acked (ack comes after done): the message returns, the lease has run out, B runs it again.
      const b = new Service("worker.ts", env);
      await own.waitStatus(task_id, "done", 90_000);
      expect(await b.stop()).toBe(0);
      expect(b.logs("task running", task_id).map((l) => l.attempt)).toEqual([2]);
      await own.results.settled();
      const sent = own.results.for(task_id);
      expect(sent.map((r) => [r.key, r.body.status])).toEqual([[task_id, "done"], [task_id, "done"]]);
      expect(sent.map((r) => r.body.attempts).sort()).toEqual([1, 2]);
      expect((await own.store.get(task_id))?.attempts).toBe(2);
    } finally {
      await admin.sendCommand(["CLIENT", "UNPAUSE"]).catch(() => {});
      await admin.quit().catch(() => {});
      await own.close();
      await redis.stop();
    }
  }, 180_000);
});
