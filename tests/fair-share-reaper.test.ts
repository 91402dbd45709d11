// The tenancy reaper (lib/tenancy/fair-share.ts): a slot whose release was missed (its worker died
// after the run, or a released message never came) is freed once its hold time passed and its task
// is not running under a live lease, and the parked task waiting for it is released and runs. A
// release that did not send what it took off the parked set (a failed publish, a worker that died)
// leaves every task of it parked again, at once or by the reaper.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { silentLogger } from "../lib/log.ts";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { TenantSlots } from "../lib/tenancy/fair-share.ts";
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

test("a task parked for longer than TASK_TTL_SECONDS keeps its record and runs when a slot frees", async () => {
  // The shortest TTL the config allows (60 s), with timeouts that fit under it. Parked, a task has no
  // transition to renew its keys: only the reaper's renewal (lib/lua/keep.lua) keeps it past its TTL.
  const env = { TASK_TTL_SECONDS: "60", MQ_INVISIBLE_MS: "20000", TASK_TIMEOUT_MS: "10000", RETRY_BASE_MS: "1000" };
  const own = await testSystem({ env });
  try {
    const keys = new ApiKeys(own.redis, own.ns.redisPrefix);
    await keys.setLimits("L", { concurrency: 1 });
    // L's one slot is held by a run elsewhere for the next 10 minutes (the reaper lists no slot before its time).
    await own.redis.zAdd(keys.keys.tenantRunning("L"), { score: Date.now() + 600_000, value: crypto.randomUUID() });

    const worker = new Service("worker.ts", { ...own.ns.env, AGENT_DELAY_MS: "100" });
    await worker.waitForLog("worker running", 60_000);
    const { task_id } = await own.tasks.submit({ user_id: "u", content: "waits behind a long run" }, "L");
    await worker.waitForLog("task parked: its tenant is at its concurrency limit", 30_000, task_id);
    const parkedAt = Date.now();
    // Past the TTL its record was given when it was created (before parking): without a renewal it is gone.
    await waitFor(async () => Date.now() - parkedAt > 65_000, 70_000, "the task's first TTL to pass");
    expect(await own.statusOf(task_id)).toBe("queued");

    // The long run ends: its slot goes to the parked task, released by the reaper from its record.
    await own.redis.del(keys.keys.tenantRunning("L"));
    await own.waitStatus(task_id, "done", 30_000);
    expect(worker.logs("parked task lost").length).toBe(0);
    expect(worker.logs("task running", task_id).length).toBe(1);
    expect(await worker.stop()).toBe(0);
  } finally {
    await own.close();
  }
}, 180_000);

/** Slots of a tenant with `concurrency`, recording what they publish; `failFirst` publishes fail at first. */
async function recordingSlots(tenant: string, concurrency: number, failFirst = 0) {
  const keys = new ApiKeys(sys.redis, sys.ns.redisPrefix);
  await keys.setLimits(tenant, { concurrency });
  const published: string[] = [];
  let failures = failFirst;
  const slots = new TenantSlots(sys.redis, sys.ns.redisPrefix, {
    holdMs: 60_000, reserveMs: 60_000, log: silentLogger,
    publish: async (id) => {
      if (failures-- > 0) throw new Error("broker unavailable");
      published.push(id);
    },
    keep: { everyMs: 60_000, record: (id, park) => sys.store.keepWaiting(id, park) },
  });
  return { slots, published, running: keys.keys.tenantRunning(tenant), parked: keys.keys.tenantParked(tenant), lock: keys.keys.tenancyReaperLock };
}

/** A task waiting with its record, as parking leaves it (its message acked). */
async function waitingTask(tenant: string): Promise<string> {
  const id = crypto.randomUUID();
  expect(await sys.store.create(id, "u", JSON.stringify({ task_id: id, user_id: "u", content: "c", tenant }), tenant)).toBe(true);
  await sys.store.markSent(id);
  expect(await sys.store.keepWaiting(id, true)).toBe("kept");
  return id;
}

test("a release whose publish fails parks the whole batch again: none of its tasks is left nowhere", async () => {
  const { slots, published, running, parked } = await recordingSlots("B", 3, 1);
  const ids = [await waitingTask("B"), await waitingTask("B"), await waitingTask("B")];
  for (const [i, id] of ids.entries()) await sys.redis.zAdd(parked, { score: i + 1, value: id });

  // Three free slots, three parked tasks taken off the parked set at once; the first publish fails.
  expect(await slots.release("B")).toBe(0);
  expect(published).toEqual([]);
  expect((await sys.redis.zRange(parked, 0, -1)).sort()).toEqual([...ids].sort());
  expect(await sys.redis.zCard(running)).toBe(0);

  // The next release (the reaper's) sends all three.
  expect(await slots.release("B")).toBe(3);
  expect(published.sort()).toEqual([...ids].sort());
  expect(await sys.redis.zCard(parked)).toBe(0);
});

test("a release cut short before its publish (its worker died) is repaired: the reaper parks the task again and sends it", async () => {
  const { slots, published, running, parked, lock } = await recordingSlots("D", 1);
  const id = await waitingTask("D");
  // What tenant-release.lua leaves when its worker dies before the publish: the task off the parked
  // set, a slot reserved for it, now run out; its record still queued and unmarked.
  await sys.redis.hDel(sys.store.keys.task(id), "parked");
  await sys.redis.zAdd(running, { score: Date.now() - 1_000, value: id });

  await sys.redis.del(lock); // a pass takes the reaper's lock for a few seconds
  await slots.reap();
  expect(published).toEqual([id]);
  // Released again: a fresh reservation holds its slot until its message comes.
  expect(Number(await sys.redis.zScore(running, id))).toBeGreaterThan(Date.now());
  expect(await sys.redis.zCard(parked)).toBe(0);

  // A reserved slot of a task that finished meanwhile is freed, not parked again.
  await sys.redis.del(running);
  const done = await waitingTask("D");
  expect(await sys.store.claim(done, "w", 60_000, "u")).toMatchObject({ kind: "claimed" });
  expect(await sys.store.complete(done, "w", { tags: ["t"], score: 1, reason: "r" })).toBe("written");
  await sys.redis.zAdd(running, { score: Date.now() - 1_000, value: done });
  await sys.redis.del(lock);
  await slots.reap();
  expect(published).toEqual([id]);
  expect(await sys.redis.zCard(running)).toBe(0);
  expect(await sys.redis.zCard(parked)).toBe(0);
});
