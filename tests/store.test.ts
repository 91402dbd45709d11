// The Redis state machine (lib/lua via TaskStore) against a real Redis: each transition and its codes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { deleteRedisKeys, testEnv } from "./helpers.ts";

const prefix = `test:store${crypto.randomUUID().slice(0, 8)}:`;
const redis = createRedis(parseConfig(testEnv()), silentLogger);
const store = new TaskStore(redis, 3600, prefix);
const id = () => crypto.randomUUID();

beforeAll(async () => {
  await connectRedis(redis);
});
afterAll(async () => {
  await deleteRedisKeys(testEnv().REDIS_URL!, prefix);
  await closeRedis(redis);
});

describe("TaskStore", () => {
  test("create: queued, legacy status key, outbox entry; a second create of the same id is refused", async () => {
    const t = id();
    expect(await store.create(t, "u", "{}")).toBe(true);
    expect(await store.create(t, "u", "{}")).toBe(false);
    expect((await store.get(t))?.status).toBe("queued");
    expect(await redis.get(store.keys.legacyStatus(t))).toBe("queued");
    expect(await redis.ttl(store.keys.task(t))).toBeGreaterThan(3500);
    expect((await store.dueOutbox(0)).map((e) => e.id)).toContain(t);
    await store.markPublished(t);
    expect((await store.dueOutbox(0)).map((e) => e.id)).not.toContain(t);
  });

  test("unpublish removes a task nobody touched, and leaves one a worker claimed", async () => {
    const a = id();
    await store.create(a, "u", "{}");
    expect(await store.unpublish(a)).toBe(true);
    expect(await store.get(a)).toBeNull();
    const b = id();
    await store.create(b, "u", "{}");
    await store.claim(b, "w1", 10_000, "u");
    expect(await store.unpublish(b)).toBe(false);
    expect((await store.get(b))?.status).toBe("running");
  });

  test("claim: one live owner at a time; an expired lease can be taken over; finished tasks are reported", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    const now = Date.now();
    expect(await store.claim(t, "w1", 10_000, "u", now)).toEqual({ kind: "claimed", attempt: 1 });
    const busy = await store.claim(t, "w2", 10_000, "u", now + 1_000);
    expect(busy).toEqual({ kind: "busy", leaseLeftMs: 9_000 });
    expect(await store.heartbeat(t, "w1", 10_000, now + 5_000)).toBe(true);
    expect(await store.claim(t, "w2", 10_000, "u", now + 12_000)).toMatchObject({ kind: "busy" });
    // w1 died: its lease runs out, w2 takes over, w1's late writes are refused
    expect(await store.claim(t, "w2", 10_000, "u", now + 16_000)).toEqual({ kind: "claimed", attempt: 2 });
    expect(await store.heartbeat(t, "w1", 10_000)).toBe(false);
    expect(await store.complete(t, "w1", { tags: [], score: 0, reason: "late" })).toBe("not_owner");
    expect(await store.complete(t, "w2", { tags: ["a"], score: 1, reason: "ok" })).toBe("written");
    expect(await store.claim(t, "w3", 10_000, "u")).toEqual({ kind: "finished", status: "done" });
    const v = await store.get(t);
    expect(v).toMatchObject({ status: "done", attempts: 2, result: { tags: ["a"], score: 1, reason: "ok" } });
    expect(await redis.get(store.keys.legacyStatus(t))).toBe("done");
    expect(await store.fail(t, "w2", "too late")).toBe("already_finished");
  });

  test("retry and release go back to queued; release does not count an attempt; fail is final", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    await store.claim(t, "a", 10_000, "u");
    expect(await store.retry(t, "a", "boom", 10_000)).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "queued", attempts: 1, error: "boom" });
    await store.claim(t, "b", 10_000, "u");
    expect(await store.release(t, "b")).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "queued", attempts: 1 });
    await store.claim(t, "c", 10_000, "u");
    expect(await store.fail(t, "c", "gave up")).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "failed", error: "gave up", attempts: 2 });
    expect(await store.claim(t, "d", 10_000, "u")).toEqual({ kind: "finished", status: "failed" });
  });

  test("a message for a task this system never recorded is adopted; forceFail records a failure", async () => {
    const t = id();
    expect(await store.claim(t, "w", 10_000, "python-user")).toEqual({ kind: "claimed", attempt: 1 });
    expect((await store.get(t))?.user_id).toBe("python-user");
    const p = id();
    expect(await store.forceFail(p, "bad message", "x")).toBe("written");
    expect(await store.get(p)).toMatchObject({ status: "failed", error: "bad message", user_id: "x" });
  });

  test("scripts survive SCRIPT FLUSH (EVALSHA falls back to EVAL)", async () => {
    await redis.sendCommand(["SCRIPT", "FLUSH"]);
    const t = id();
    expect(await store.create(t, "u", "{}")).toBe(true);
  });

  test("stalled: running past its lease or retrying past its delay, unclaimed: returned once a period with its message", async () => {
    const quick = new TaskStore(redis, 3600, prefix, 1_000);
    const now = Date.now();
    const [running, retrying, live, done] = [id(), id(), id(), id()];
    for (const t of [running, retrying, live, done]) await quick.create(t, "u", `{"task_id":"${t}"}`, now);
    await quick.claim(running, "w", 5_000, "u", now);
    await quick.claim(retrying, "w", 5_000, "u", now);
    await quick.retry(retrying, "w", "boom", 10_000, now + 1_000);
    await quick.claim(live, "w", 5_000, "u", now);
    await quick.heartbeat(live, "w", 60_000, now + 4_000);
    await quick.claim(done, "w", 5_000, "u", now);
    await quick.complete(done, "w", { tags: [], score: 0, reason: "" });
    expect(Number(await redis.hExists(store.keys.task(done), "message"))).toBe(0);
    const ids = async (at: number) => (await quick.stalled(100, at)).map((s) => s.id).sort();
    expect(await ids(now + 5_500)).toEqual([]); // leases end at +5 s; 1 s of grace
    expect(await quick.stalled(100, now + 6_000)).toEqual([{ id: running, body: `{"task_id":"${running}"}` }]);
    expect(await ids(now + 6_500)).toEqual([]); // already handed out this period
    expect(await ids(now + 12_000)).toEqual([running, retrying].sort()); // retry due at +11 s, +1 s
    // A new claim (the re-published message arrived) stops the watch until its own lease ends;
    // the retrying one, still unclaimed, is due again one period later.
    await quick.claim(running, "w2", 5_000, "u", now + 12_500);
    expect(await ids(now + 13_500)).toEqual([retrying]);
    // An adopted task keeps the message that brought it.
    const adopted = id();
    await quick.claim(adopted, "w", 1_000, "py", now, `{"task_id":"${adopted}"}`);
    expect(await quick.stalled(100, now + 2_000)).toContainEqual({ id: adopted, body: `{"task_id":"${adopted}"}` });
  });

  test("dead letters are kept newest first", async () => {
    await store.deadLetter({ reason: "r1", body: "b1", at: "t" });
    await store.deadLetter({ reason: "r2", body: "b2", at: "t" });
    expect((await store.deadLetters(2)).map((d) => d.reason)).toEqual(["r2", "r1"]);
  });
});
