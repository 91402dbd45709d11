// README "Guarantees" that need a run to outlast its lease, or a worker to stop at the worst moment:
// - long runs: the heartbeat extends the message's invisibility and the Redis lease;
// - a worker that lost its lease aborts its run;
// - finishing: the result is published before the task is `done`, so a crash in between puts a second
//   result for the same task id on the result topic. (The test holds whether the task then runs again,
//   as on main, or only its recorded result is published again: what the README promises is the same.)
// Workers are child processes (`bun worker.ts`); statuses are read with TaskStore.get, results from
// the result topic. Short settings: MQ_INVISIBLE_MS=10000 (its minimum).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunEvent } from "../lib/agent/test-agents.ts";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { messagesInTopic } from "./support/results.ts";
import { tcpProxy } from "./support/tcp-proxy.ts";
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
    // (Matched on its start: the reason after the colon is wording.)
    await waitFor(() => a.lines.some((l) => l.task_id === task_id && String(l.msg).startsWith("task abandoned")), 30_000,
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

describe("finishing: the result is published before the task is done", () => {
  test("a fenced run whose agent ignores its AbortSignal: the task is failed, not released to another worker", async () => {
    // README, "Hard deadline": A's Redis stops answering (the relay holds), so A fences its run; the
    // agent ignores the signal and runs on. Released once Redis answered again, the task went back to
    // the queue and B ran it beside A's ignored run. Now it is failed (the claim was still A's), and B
    // only publishes the recorded failure. The recording agent's file names every run's process.
    const dir = mkdtempSync(join(tmpdir(), "deaf-fence-"));
    const relay = await tcpProxy(sys.ns.env.REDIS_URL!);
    try {
      const env = { ...sys.ns.env, MQ_INVISIBLE_MS: "10000", AGENT: "record", AGENT_RECORD_DIR: dir, TASK_ABORT_GRACE_MS: "300" };
      const a = new Service("worker.ts", { ...env, REDIS_URL: relay.url });
      await a.waitForLog("worker running", 60_000);
      const { task_id } = await sys.tasks.submit({ user_id: "fence", content: "deaf #hang=25000" });
      await a.waitForLog("task running", 60_000, task_id);
      const b = new Service("worker.ts", env);
      await b.waitForLog("worker running", 60_000);
      relay.hold();
      // The fence fires lease - 2 s after the last heartbeat that got through; the grace 300 ms later.
      await waitFor(() => a.logs("task abandoned: its claim is lost or could not be renewed", task_id).length > 0 ||
        a.logs("agent ignored its AbortSignal after its run was fenced: not released; failed if the claim is still ours", task_id).length > 0,
        30_000, () => `the run fenced\n${tail(a)}`);
      relay.resume();
      // A released task runs again (its copy comes back once A stopped extending it), on B or on A.
      const reruns = () => b.logs("task running", task_id).length + a.logs("task running", task_id).length - 1;
      await waitFor(async () => reruns() > 0 || (await sys.store.get(task_id))?.status === "failed",
        60_000, () => `a second run or the task failed\n${tail(b)}\n${tail(a)}`);
      expect(reruns(), tail(b)).toBe(0);
      const view = await sys.store.get(task_id);
      expect(view?.status).toBe("failed");
      expect(view?.error).toContain("run fenced; the agent ignored its AbortSignal for 300 ms and may still run, so the task is not retried");
      await waitFor(() => sys.results.for(task_id).length > 0, 60_000, () => `the failure result\n${tail(b)}`);
      expect(sys.results.for(task_id)[0]!.body).toMatchObject({ status: "failed", result: null });
      expect(await b.stop()).toBe(0);
      expect(await a.stop()).toBe(0);
      const starts = readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), "utf8").trim().split("\n"))
        .map((l) => JSON.parse(l) as RunEvent).filter((e) => e.ev === "start" && e.task === task_id);
      expect(starts.map((e) => e.pid)).toEqual([a.proc.pid]);
    } finally {
      relay.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  test("a crash after the result was published and before done: the task ends done, and a second result goes out", async () => {
    // Worker A reaches Redis through a relay that delays every command 2 s. The moment the broker holds
    // A's result, the relay stops forwarding (whatever A writes after publishing never lands) and A is
    // killed: a crash between publish and done, wherever A's other writes come. The 2 s delay makes the
    // window between the publish and A's next write wide enough to stop there on a loaded box.
    const relay = await tcpProxy(sys.ns.env.REDIS_URL!, { delayMs: 2_000 });
    try {
      const env = { ...sys.ns.env, MQ_INVISIBLE_MS: "10000", AGENT_DELAY_MS: "2000" };
      // REDIS_TIMEOUT_MS (a Redis command timeout, where the worker has one) well above the relay's delay.
      const a = new Service("worker.ts", { ...env, REDIS_URL: relay.url, REDIS_TIMEOUT_MS: "10000" });
      await a.waitForLog("worker running", 60_000);
      const stored = () => messagesInTopic(sys.ns, sys.ns.resultTopic);
      const before = await stored();
      const { task_id } = await sys.tasks.submit({ user_id: "finish", content: "publish, then done" });
      await a.waitForLog("task running", 60_000, task_id);
      for (const deadline = Date.now() + 60_000; (await stored()) === before; ) {
        if (Date.now() > deadline) throw new Error(`worker A never published its result\n${tail(a)}`);
        await Bun.sleep(10);
      }
      relay.hold();
      a.signal("SIGKILL");
      await a.exited;
      // The result is out, and the task is not done: done comes only after the publish.
      expect((await sys.store.get(task_id))?.status).not.toBe("done");
      const b = new Service("worker.ts", env);
      await sys.waitStatus(task_id, "done", 90_000);
      expect(await b.stop()).toBe(0);
      await sys.results.settled();
      const sent = sys.results.for(task_id);
      // The second result message for the same task id the README warns of (downstream dedupes on the key).
      expect(sent.length, tail(b)).toBe(2);
      for (const r of sent) expect([r.key, r.body.task_id, r.body.status]).toEqual([task_id, task_id, "done"]);
      expect((await sys.store.get(task_id))?.result).toEqual(sent[0]!.body.result as never);
    } finally {
      relay.close();
    }
  }, 180_000);
});
