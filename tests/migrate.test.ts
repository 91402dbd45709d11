// The one-shot migration from the previous key layout (bun scripts/migrate-keys.ts) on the shared
// Redis under a test prefix: tasks, outbox and stalled entries reach the new layout and keep working.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis, type Redis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { deleteRedisKeys, testEnv } from "./helpers.ts";

const prefix = `test:migrate${crypto.randomUUID().slice(0, 8)}:`;
let redis: Redis;
let store: TaskStore;

beforeAll(async () => {
  redis = createRedis(parseConfig(testEnv()), silentLogger);
  await connectRedis(redis);
  store = new TaskStore(redis, 3600, prefix, 600_000, { buckets: 4 });
});
afterAll(async () => {
  await closeRedis(redis);
  await deleteRedisKeys(testEnv().REDIS_URL!, prefix);
});

test("previous-layout tasks, outbox and stalled entries are moved; a second run does nothing", async () => {
  const r = redis as import("../lib/scripts.ts").SingleRedis;
  const [done, running, unsent] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
  const now = Date.now();
  await r.hSet(`${prefix}task:${done}`, { status: "done", user_id: "u", attempts: "1", result: '{"tags":[],"score":1,"reason":"r"}', created_at: String(now), message: "{}" });
  await r.expire(`${prefix}task:${done}`, 500);
  await r.set(`${prefix}task:${done}:status`, "done");
  await r.hSet(`${prefix}task:${running}`, { status: "running", user_id: "u", attempts: "1", owner: "w", lease_until: String(now + 60_000), message: `{"task_id":"${running}"}` });
  await r.hSet(`${prefix}task:${unsent}`, { status: "queued", user_id: "u", attempts: "0", created_at: String(now) });
  await r.zAdd(`${prefix}outbox`, { score: now - 60_000, value: unsent });
  await r.hSet(`${prefix}outbox:bodies`, unsent, `{"task_id":"${unsent}"}`);
  await r.zAdd(`${prefix}stalled`, { score: now + 660_000, value: running });

  const p = Bun.spawnSync(["bun", join(import.meta.dir, "..", "scripts", "migrate-keys.ts")], {
    env: { ...process.env, ...testEnv(), REDIS_PREFIX: prefix, REDIS_BUCKETS: "4", LOG_FORMAT: "json" },
  });
  expect(p.exitCode, p.stderr.toString()).toBe(0);
  expect(p.stderr.toString()).toContain('"tasks":3');

  expect(await store.get(done)).toMatchObject({ status: "done", result: { tags: [], score: 1, reason: "r" } });
  expect(await r.ttl(store.keys.task(done))).toBeGreaterThan(400);
  expect(await r.hExists(store.keys.task(done), "message")).toBeFalsy();
  expect(await r.get(store.keys.legacyStatus(done))).toBe("done"); // the original's key is untouched
  expect(await store.get(running)).toMatchObject({ status: "running", attempts: 1 });
  expect(await r.zScore(store.stalledKey(running), running)).toBe(now + 660_000);
  // The unsent task: body moved into the task, hint in its bucket, and the sweep sends it.
  expect(await store.dueOutbox(0)).toContainEqual({ id: unsent, body: `{"task_id":"${unsent}"}` });
  for (const k of ["outbox", "outbox:bodies", "stalled", `task:${done}`, `task:${running}`, `task:${unsent}`])
    expect(await r.exists(`${prefix}${k}`)).toBe(0);

  const again = Bun.spawnSync(["bun", join(import.meta.dir, "..", "scripts", "migrate-keys.ts")], {
    env: { ...process.env, ...testEnv(), REDIS_PREFIX: prefix, REDIS_BUCKETS: "4", LOG_FORMAT: "json" },
  });
  expect(again.exitCode).toBe(0);
  expect(again.stderr.toString()).toContain('"tasks":0');
}, 30_000);
