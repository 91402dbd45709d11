// The tenancy reaper (lib/tenancy/fair-share.ts): a slot whose release was missed (its worker died
// after the run, or a released message never came) is freed once its hold time passed and its task
// is not running under a live lease, and the parked task waiting for it is released and runs.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem();
});
afterAll(async () => {
  await sys?.close();
}, 60_000);

test("a missed release is repaired: the stale slot is freed and the parked task runs", async () => {
  const keys = new ApiKeys(sys.redis, sys.ns.redisPrefix);
  await keys.setLimits("R", { concurrency: 1 });
  // A slot held by a task that no longer runs, its hold time over: what a worker dying between the
  // end of a run and its release leaves behind.
  const running = keys.keys.tenantRunning("R");
  await sys.redis.zAdd(running, { score: Date.now() - 1_000, value: crypto.randomUUID() });

  const worker = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "100" });
  await worker.waitForLog("worker running", 60_000);
  const { task_id } = await sys.tasks.submit({ user_id: "u", content: "c" }, "R");
  await worker.waitForLog("task parked: its tenant is at its concurrency limit", 30_000, task_id);
  await sys.waitStatus(task_id, "done", 60_000);
  expect(worker.logs("tenant slot freed: its run ended without a release, or its released message never came").length).toBe(1);
  expect(worker.logs("parked task released", task_id).length).toBe(1);
  // Nothing left held or parked. The slot is released after the run is recorded done (the handler's
  // wrapper, lib/worker/tenant-limits.ts), so "done" can be seen a moment before the release.
  await waitFor(async () => (await sys.redis.zCard(running)) === 0, 10_000, "the tenant's slot released after the run");
  expect(await sys.redis.zCard(keys.keys.tenantParked("R"))).toBe(0);
  await worker.stop();
}, 120_000);
