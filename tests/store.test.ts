// The Redis state machine (lib/lua via TaskStore): each transition and its codes, run twice: against
// the shared Redis with the single-node client, and against a private redis-server started here in
// cluster mode (one node owning all 16384 slots) through the Redis Cluster client. A cluster-mode
// server refuses a script whose KEYS span slots (CROSSSLOT), so passing there is the proof that the
// layout works on Redis Cluster; every script call's KEYS are also checked to share one slot.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis, scanKeys, unlinkKeys, type Redis } from "../lib/redis.ts";
import { commandTimeout, keySlot, runScript, scriptCalls, send } from "../lib/scripts.ts";
import { CreateError, TaskStore } from "../lib/store.ts";
import { IdempotencyRecords } from "../lib/state/idempotency.ts";
import { announceCancel } from "../lib/state/cancel-channel.ts";
import { CancelWatch } from "../lib/worker/cancel-watch.ts";
import { UserIndex } from "../lib/state/user-index.ts";
import { testEnv } from "./helpers.ts";
import { waitFor } from "./support/processes.ts";
import { oneNodeCluster } from "./support/redis-server.ts";

const id = () => crypto.randomUUID();
const crossSlot: string[] = [];
let scriptCallCount = 0;
/** Script calls by name, since the counter was last cleared. */
const callsByName = new Map<string, number>();
/** Set while the single-node backend runs: there, `sent` batches many tasks in one call on purpose. */
let singleNode = false;
scriptCalls.observe = (name, keys) => {
  scriptCallCount++;
  callsByName.set(name, (callsByName.get(name) ?? 0) + 1);
  if (singleNode && name === "sent") return;
  if (new Set(keys.map(keySlot)).size > 1) crossSlot.push(`${name}: ${keys.join(" ")}`);
};

// A private cluster-mode redis-server: one node, every slot.
let cluster: Awaited<ReturnType<typeof oneNodeCluster>>;
beforeAll(async () => {
  cluster = await oneNodeCluster();
}, 30_000);

afterAll(() => {
  cluster?.stop();
  expect(crossSlot).toEqual([]);
  expect(scriptCallCount).toBeGreaterThan(50);
});

const backends: [string, () => Record<string, string>][] = [
  ["single node (shared Redis)", () => ({ REDIS_URL: testEnv().REDIS_URL! })],
  ["Redis Cluster client, cluster-mode server", () => ({ REDIS_CLUSTER_NODES: cluster.nodes })],
];

describe.each(backends)("TaskStore on %s", (_name, env) => {
  const prefix = `test:store${crypto.randomUUID().slice(0, 8)}:`;
  let redis: Redis;
  let store: TaskStore;
  const fieldsOf = async (t: string) => Object.keys(await redis.hGetAll(store.keys.task(t))).sort();
  const field = async (t: string, f: string) => send<string | null>(redis, store.keys.task(t), ["HGET", store.keys.task(t), f]);
  const redisNow = async () => {
    const [s, us] = (await send<string[]>(redis, store.keys.task("x"), ["TIME"])).map(Number);
    return s! * 1000 + Math.floor(us! / 1000);
  };
  /** Claims once the current lease ended; a takeover of a dead run must be `isolated` (claim.lua, suspects). */
  const claimWhenFree = async (s: TaskStore, t: string, token: string, leaseMs: number, isolated = true) => {
    let c: Awaited<ReturnType<TaskStore["claim"]>> | undefined;
    await waitFor(async () => (c = await s.claim(t, token, leaseMs, "u", { isolated })).kind !== "busy", 10_000, `lease of ${t} to end`);
    return c!;
  };

  beforeAll(async () => {
    singleNode = !env().REDIS_CLUSTER_NODES;
    redis = createRedis(parseConfig(env()), silentLogger);
    expect(await connectRedis(redis)).toBe(true);
    store = new TaskStore(redis, 3600, prefix, 600_000, { buckets: 4, maxAttempts: 3 });
  });
  afterAll(async () => {
    for await (const batch of scanKeys(redis, `*${prefix}*`)) await unlinkKeys(redis, batch);
    await closeRedis(redis);
  });

  test("create: queued, the original's status key byte for byte (same slot), an outbox hint; a second create is refused", async () => {
    const t = id();
    expect(await store.create(t, "u", "{}")).toBe(true);
    expect(await store.create(t, "u", "{}")).toBe(false);
    expect((await store.get(t))?.status).toBe("queued");
    expect(store.keys.legacyStatus(t)).toBe(`${prefix}task:${t}:status`);
    expect(keySlot(store.keys.legacyStatus(t))).toBe(keySlot(store.keys.task(t)));
    expect(await redis.get(store.keys.legacyStatus(t))).toBe("queued");
    expect(await redis.ttl(store.keys.task(t))).toBeGreaterThan(3500);
    expect((await store.dueOutbox(0)).map((e) => e.id)).toContain(t);
    await store.markSent(t);
    expect(await redis.zScore(store.outboxKey(t), t)).toBeNull();
    expect((await store.dueOutbox(0)).map((e) => e.id)).not.toContain(t);
  });

  test("a create carries a deadline on Redis's clock (REDIS_TIMEOUT_MS less a margin): one that arrives after it writes nothing", async () => {
    const timeout = commandTimeout(redis)!;
    await store.clock!.sample();
    const before = await redisNow();
    const by = store.clock!.answerBy()!;
    const after = await redisNow();
    // The offset is read at the middle of a round trip the clock accepts only if under timeout/4.
    const slack = timeout / 8 + 5;
    const expected = timeout - Math.min(250, timeout / 4);
    expect(by).toBeGreaterThanOrEqual(before + expected - slack);
    expect(by).toBeLessThanOrEqual(after + expected + slack);
    // The script itself, as a create answered late would meet it: past its deadline, -1, nothing written.
    const t = id();
    const keys = [store.keys.task(t), store.keys.legacyStatus(t), store.keys.events(t)];
    expect(await runScript(redis, "create", keys, ["u", 3600, "{}", "", "", (await redisNow()) - 1])).toBe(-1);
    expect(await fieldsOf(t)).toEqual([]);
    expect(await send(redis, keys[1], ["EXISTS", keys[1]!])).toBe(0);
    expect(await runScript(redis, "create", keys, ["u", 3600, "{}", "", "", (await redisNow()) + 60_000])).toBeGreaterThan(0);
    expect((await store.get(t))?.status).toBe("queued");
  });

  test("the outbox hint lands before the create is sent, on Redis Cluster too (another node): a create whose hint failed writes nothing there", async () => {
    const s = new TaskStore(redis, 3600, `${prefix}hintless:`, 600_000, { buckets: 1 });
    const t = id();
    const zset = s.outboxKey(t);
    await send(redis, zset, ["SET", zset, "not a zset"]); // ZADD answers WRONGTYPE: the hint fails
    const err = (await s.createAt(t, "u", "{}").then(() => undefined, (e: unknown) => e)) as CreateError;
    expect(err).toBeInstanceOf(CreateError);
    const k = s.keys.task(t);
    if (_name.startsWith("Redis Cluster")) {
      expect(err.written).toBe("no");
      expect(await send(redis, k, ["EXISTS", k])).toBe(0);
    } else {
      // One connection: the hint is applied first whatever happens to the process; a failed one is
      // reported with the create written, and the caller makes a tombstone of it (abandon).
      expect(err.written).toBe("yes");
    }
    await send(redis, zset, ["DEL", zset]);
  });

  test("sends confirmed in one turn are marked by one script call on one node (one per task on a cluster); a tombstone stays one", async () => {
    const ids = Array.from({ length: 40 }, id);
    for (const t of ids) await store.create(t, "u", "{}");
    const gone = ids[0]!;
    expect(await store.abandon(gone)).toBe(true);
    callsByName.clear();
    await Promise.all(ids.map((t) => store.markSent(t)));
    expect(callsByName.get("sent")).toBe(singleNode ? 1 : ids.length);
    for (const t of ids.slice(1)) expect(await field(t, "sent")).toBe("1");
    expect(await field(gone, "sent")).toBeNull();
    expect((await store.get(gone))).toBeNull(); // still a tombstone: GET says unknown
    const due = (await store.dueOutbox(0)).map((e) => e.id);
    for (const t of ids) expect(due).not.toContain(t);
  });

  test("a delayed task: scheduled with run_at, TTL past its due time; the outbox keeps run_at; abandon and claim take it as queued", async () => {
    const t = id();
    const runAt = (await redisNow()) + 7_200_000;
    expect(await store.createAt(t, "u", "{}", "", runAt)).toBeGreaterThan(0);
    const v = await store.get(t);
    expect(v).toMatchObject({ status: "scheduled", run_at: new Date(runAt).toISOString(), attempts: 0 });
    expect(await redis.get(store.keys.legacyStatus(t))).toBe("scheduled");
    expect(await redis.ttl(store.keys.task(t))).toBeGreaterThan(3600 + 7_100);
    expect(await redis.ttl(store.keys.legacyStatus(t))).toBeGreaterThan(3600 + 7_100);
    expect(await store.dueOutbox(0)).toContainEqual({ id: t, body: "{}", runAt });
    const c = await store.claim(t, "w", 10_000, "u");
    expect(c).toMatchObject({ kind: "claimed", attempt: 1 });
    expect((await store.get(t))?.status).toBe("running");
    const u = id();
    await store.create(u, "u", "{}", "", runAt);
    expect(await store.abandon(u)).toBe(true);
    expect(await store.get(u)).toBeNull();
  });

  test("a user's listing index: its own slot, newest first, paged by cursor, capped, gone tasks dropped", async () => {
    const index = new UserIndex(store, 5, 3600);
    const user = `u{${id().slice(0, 4)}}%`; // braces and % in a user id stay inside the user's hash tag
    const k = index.key("acme", user);
    expect(k.startsWith(`{${prefix}user:acme:u%7B`)).toBe(true);
    expect(k.indexOf("}")).toBe(k.lastIndexOf("}"));
    const ids = [id(), id(), id(), id(), id(), id()];
    for (const t of ids) {
      await store.create(t, user, "{}", "acme");
      await index.add("acme", user, t, (await redisNow()) + ids.indexOf(t)); // distinct, increasing scores
    }
    expect(await redis.zCard(k)).toBe(5); // the oldest trimmed
    expect(await redis.ttl(k)).toBeGreaterThan(3500);
    const p1 = await index.page("acme", user, { limit: 2 });
    expect(p1.tasks.map((v) => v.task_id)).toEqual([ids[5]!, ids[4]!]);
    const p2 = await index.page("acme", user, { limit: 2, after: p1.next });
    expect(p2.tasks.map((v) => v.task_id)).toEqual([ids[3]!, ids[2]!]);
    await unlinkKeys(redis, [store.keys.task(ids[1]!), store.keys.legacyStatus(ids[1]!)]); // expired
    const p3 = await index.page("acme", user, { limit: 2, after: p2.next });
    expect(p3).toEqual({ tasks: [], next: undefined });
    expect(await redis.zScore(k, ids[1]!)).toBeNull();
    expect((await index.page("other", user, { limit: 10 })).tasks).toEqual([]);
  });

  test("the outbox sweep re-sends only what is still unsent, and drops hints the task contradicts", async () => {
    const [unsent, sent] = [id(), id()];
    await store.create(unsent, "u", `{"task_id":"${unsent}"}`);
    await store.create(sent, "u", "{}");
    await send(redis, store.keys.task(sent), ["HSET", store.keys.task(sent), "sent", "1"]); // sent; hint drop lost
    const due = await store.dueOutbox(0);
    expect(due).toContainEqual({ id: unsent, body: `{"task_id":"${unsent}"}` });
    expect(due.map((d) => d.id)).not.toContain(sent);
    expect(await redis.zScore(store.outboxKey(sent), sent)).toBeNull();
    // Entries younger than the threshold wait.
    expect((await store.dueOutbox(60_000)).map((d) => d.id)).not.toContain(unsent);
  });

  test("abandon (issue 8 #4): a task told 503 becomes a tombstone: GET 404, a late create and a late message are no-ops", async () => {
    const a = id();
    await store.create(a, "u", "{}");
    expect(await store.abandon(a)).toBe(true);
    expect(await store.get(a)).toBeNull();
    expect(await redis.get(store.keys.legacyStatus(a))).toBeNull();
    expect(await store.create(a, "u", "{}")).toBe(false);
    expect(await store.claim(a, "w", 10_000, "u", { message: "{}" })).toEqual({ kind: "finished", status: "rejected" });
    expect((await store.dueOutbox(0)).map((d) => d.id)).not.toContain(a);
    // A create that had not landed yet when the tombstone was written: refused when it lands.
    const late = id();
    expect(await store.abandon(late)).toBe(true);
    expect(await store.create(late, "u", "{}")).toBe(false);
    // A task a worker already claimed is left alone: its message did get through.
    const b = id();
    await store.create(b, "u", "{}");
    await store.claim(b, "w1", 10_000, "u");
    expect(await store.abandon(b)).toBe(false);
    expect((await store.get(b))?.status).toBe("running");
  });

  test("claim: one live owner at a time (leases on Redis's clock); an expired lease is taken over; late writes are refused", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    const before = await redisNow();
    expect(await store.claim(t, "w1", 800, "u")).toMatchObject({ kind: "claimed", attempt: 1 });
    const leaseUntil = Number(await field(t, "lease_until"));
    expect(leaseUntil).toBeGreaterThanOrEqual(before + 800);
    expect(leaseUntil).toBeLessThanOrEqual((await redisNow()) + 800);
    const busy = await store.claim(t, "w2", 800, "u");
    expect(busy.kind).toBe("busy");
    expect(await store.heartbeat(t, "w1", 800)).toBe(true);
    // w1 died: its lease runs out, w2 takes over, w1's late writes are refused
    expect(await claimWhenFree(store, t, "w2", 10_000, false)).toMatchObject({ kind: "claimed", attempt: 2 });
    expect(await store.heartbeat(t, "w1", 800)).toBe(false);
    expect(await store.recordResult(t, "w1", { tags: [], score: 0, reason: "late" })).toBe("not_owner");
    expect(await store.complete(t, "w2", { tags: ["a"], score: 1, reason: "ok" })).toBe("written");
    expect(await store.claim(t, "w3", 10_000, "u")).toEqual({ kind: "finished", status: "done" });
    expect(await store.get(t)).toMatchObject({ status: "done", attempts: 2, result: { tags: ["a"], score: 1, reason: "ok" } });
    expect(await redis.get(store.keys.legacyStatus(t))).toBe("done");
    expect(await store.fail(t, "w2", "too late")).toBe("already_finished");
  });

  test("a finished task shrinks to status, user_id, result, error, attempts and times", async () => {
    const t = id();
    await store.create(t, "u", "x".repeat(1024));
    await store.claim(t, "w", 10_000, "u");
    await store.complete(t, "w", { tags: ["a"], score: 1, reason: "ok" });
    expect(await fieldsOf(t)).toEqual(["attempts", "created_at", "finished_at", "result", "started_at", "status", "updated_at", "user_id"]);
  });

  test("cancel (issue 10): queued -> canceled at once, held to publish; running -> marked, and the run ends canceled", async () => {
    const q = id();
    await store.create(q, "u", "{}");
    expect(await store.cancel(q, "api", 10_000)).toEqual({ kind: "canceled", attempts: 0, userId: "u" });
    expect(await redis.get(store.keys.legacyStatus(q))).toBe("canceled");
    expect(await store.claim(q, "w", 10_000, "u")).toMatchObject({ kind: "busy" }); // the API holds it to publish
    expect(await store.published(q, "api")).toBe("written");
    expect(await store.claim(q, "w", 10_000, "u")).toEqual({ kind: "finished", status: "canceled" });
    expect(await store.cancel(q, "api2", 10_000)).toEqual({ kind: "finished", status: "canceled" });
    expect(await fieldsOf(q)).toEqual(["attempts", "created_at", "finished_at", "status", "updated_at", "user_id"]);
    // The API could not publish: the next claim does.
    const p = id();
    await store.create(p, "u", "{}");
    await store.cancel(p, "api", 10_000);
    expect(await store.release(p, "api", 0)).toBe("written");
    expect(await store.claim(p, "w", 10_000, "u")).toEqual({ kind: "publish", attempts: 0, outcome: "canceled", exhausted: false });
    // Running: marked; the heartbeat tells; the run records it canceled.
    const r = id();
    await store.create(r, "u", "{}");
    await store.claim(r, "w", 10_000, "u");
    expect(await store.cancel(r, "api", 10_000)).toEqual({ kind: "requested" });
    expect(await store.cancel(r, "api", 10_000)).toEqual({ kind: "requested" });
    expect((await store.get(r))?.status).toBe("running");
    expect(await store.heartbeat(r, "w", 10_000)).toBe("cancel");
    expect(await store.cancelRun(r, "w")).toBe("written");
    expect(await store.get(r)).toMatchObject({ status: "canceled", attempts: 1 });
    // A run that finishes before it noticed is recorded canceled too.
    const late = id();
    await store.create(late, "u", "{}");
    await store.claim(late, "w", 10_000, "u");
    await store.cancel(late, "api", 10_000);
    expect(await store.recordResult(late, "w", { tags: [], score: 0, reason: "too late" })).toBe("canceled");
    expect(await store.published(late, "w")).toBe("written");
    expect((await store.get(late))?.status).toBe("canceled");
    // A run that died after the cancel was asked: the next claim cancels it instead of running it.
    const dead = id();
    await store.create(dead, "u", "{}");
    await store.claim(dead, "w1", 1_500, "u");
    await store.cancel(dead, "api", 10_000);
    expect(await claimWhenFree(store, dead, "w2", 10_000)).toEqual({ kind: "publish", attempts: 1, outcome: "canceled", exhausted: false });
    // Finished tasks and unknown ones.
    const done = id();
    await store.create(done, "u", "{}");
    await store.claim(done, "w", 10_000, "u");
    await store.complete(done, "w", { tags: [], score: 0, reason: "ok" });
    expect(await store.cancel(done, "api", 10_000)).toEqual({ kind: "finished", status: "done" });
    expect(await store.cancel(id(), "api", 10_000)).toEqual({ kind: "not_found" });
  });

  test("cancel notices (issue 10): a PUBLISH on the cancel channel reaches a worker's CancelWatch", async () => {
    const watch = new CancelWatch(redis, store.keys.cancelChannel, silentLogger);
    const seen: string[] = [];
    const t = id();
    const stop = watch.watch(t, () => seen.push(t));
    try {
      await watch.start();
      await announceCancel(redis, store.keys.cancelChannel, id()); // another task: not ours
      await announceCancel(redis, store.keys.cancelChannel, t);
      await waitFor(() => seen.length > 0, 5_000, "the cancel notice");
      expect(seen).toEqual([t]);
    } finally {
      stop();
      await watch.close();
    }
  });

  test("Idempotency-Key records (issue 10): reserve once, conflict on another body, settle, take over", async () => {
    const records = new IdempotencyRecords(redis, store.keys, 60);
    const key = records.keyOf("acme", "u", "k");
    expect(key).not.toBe(records.keyOf("", "u", "k"));
    const [a, b] = [id(), id()];
    expect(await records.reserve(key, "fp1", a)).toEqual({ kind: "reserved" });
    expect(await records.reserve(key, "fp2", b)).toEqual({ kind: "conflict" });
    expect(await records.reserve(key, "fp1", b)).toMatchObject({ kind: "held", taskId: a, state: "pending" });
    expect(await records.accept(key, b)).toBe(false);
    expect(await records.accept(key, a)).toBe(true);
    expect(await records.reserve(key, "fp1", b)).toMatchObject({ kind: "held", taskId: a, state: "accepted" });
    expect(await records.reserve(key, "fp1", b, a)).toEqual({ kind: "reserved" }); // taken over from a
    expect(await records.reserve(key, "fp1", id(), a)).toMatchObject({ kind: "held", taskId: b }); // a no longer holds it
    expect(await records.release(key, b)).toBe(true);
    expect(await records.reserve(key, "fp2", a)).toEqual({ kind: "reserved" });
    expect(await redis.ttl(key)).toBeGreaterThan(50);
  });

  test("heartbeat renews the lease and the TTL of both keys (issue 8 #9)", async () => {
    const short = new TaskStore(redis, 60, prefix, 600_000);
    const t = id();
    await short.create(t, "u", "{}");
    await short.claim(t, "w", 10_000, "u");
    await redis.expire(short.keys.task(t), 5);
    await redis.expire(short.keys.legacyStatus(t), 5);
    expect(await short.heartbeat(t, "w", 10_000)).toBe(true);
    expect(await redis.ttl(short.keys.task(t))).toBeGreaterThan(50);
    expect(await redis.ttl(short.keys.legacyStatus(t))).toBeGreaterThan(50);
  });

  test("keepWaiting renews a parked (queued or scheduled) task's keys; it leaves an ended task's TTL and reports a lost record", async () => {
    const short = new TaskStore(redis, 60, prefix, 600_000);
    const [queued, done, delayed] = [id(), id(), id()];
    await short.create(queued, "u", "{}");
    for (const k of [short.keys.task(queued), short.keys.legacyStatus(queued), short.keys.events(queued)]) await redis.expire(k, 5);
    expect(await short.keepWaiting(queued)).toBe("kept");
    for (const k of [short.keys.task(queued), short.keys.legacyStatus(queued)]) expect(await redis.ttl(k)).toBeGreaterThan(50);
    // The events list too (create wrote the `queued` event): it must not expire before the hash (SSE numbering).
    expect(await redis.ttl(short.keys.events(queued))).toBeGreaterThan(50);

    await short.create(done, "u", "{}");
    await short.claim(done, "w", 10_000, "u");
    expect(await short.complete(done, "w", { tags: [], score: 1, reason: "r" })).toBe("written");
    await redis.expire(short.keys.task(done), 5);
    expect(await short.keepWaiting(done)).toBe("not_waiting");
    expect(await redis.ttl(short.keys.task(done))).toBeLessThanOrEqual(5);

    // A longer TTL (a delayed task's: TTL past its due time) is not shortened.
    await short.create(delayed, "u", "{}", "", Date.now() + 3_600_000);
    expect(await short.keepWaiting(delayed)).toBe("kept");
    expect(await redis.ttl(short.keys.task(delayed))).toBeGreaterThan(3_600);

    expect(await short.keepWaiting(id())).toBe("gone");
  });

  test("retry and release go back to queued; release does not count an attempt; a final failure is published, then failed", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    await store.claim(t, "a", 10_000, "u");
    // Due back at once (0 ms): a claim before a retry's backoff ends is refused (back_at, below).
    expect(await store.retry(t, "a", "boom", 0)).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "queued", attempts: 1, error: "boom" });
    await store.claim(t, "b", 10_000, "u");
    expect(await store.release(t, "b", 0)).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "queued", attempts: 1 });
    await store.claim(t, "c", 10_000, "u");
    expect(await store.fail(t, "c", "gave up")).toBe("written");
    // Failed at once (GET says so), the failure result still to publish: a redelivery publishes only.
    expect(await store.get(t)).toMatchObject({ status: "failed", error: "gave up", attempts: 2 });
    expect(await store.release(t, "c")).toBe("written"); // the publish failed: claim dropped, outcome kept
    expect(await store.claim(t, "d", 10_000, "u")).toEqual({ kind: "publish", attempts: 2, outcome: "failed", error: "gave up", exhausted: false });
    expect(await store.published(t, "d")).toBe("written");
    expect(await store.claim(t, "e", 10_000, "u")).toEqual({ kind: "finished", status: "failed" });
  });

  test("a result recorded but not published is published by the next claim, the agent not run again (issue 8 #5)", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    await store.claim(t, "a", 10_000, "u");
    expect(await store.recordResult(t, "a", { tags: ["r"], score: 2, reason: "kept" })).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "running", result: null });
    expect(await store.release(t, "a", 0)).toBe("written"); // publish failed
    const c = await store.claim(t, "b", 10_000, "u");
    expect(c).toEqual({ kind: "publish", attempts: 1, outcome: "done", result: { tags: ["r"], score: 2, reason: "kept" }, exhausted: false });
    expect(await store.published(t, "b")).toBe("written");
    expect(await store.get(t)).toMatchObject({ status: "done", attempts: 1, result: { tags: ["r"], score: 2, reason: "kept" } });
  });

  test("a task whose runs never finish (its worker dies each time) is failed at the claim after MAX_ATTEMPTS (issue 8 #6)", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    for (let i = 1; i <= 2; i++) expect(await claimWhenFree(store, t, `w${i}`, 300, false)).toMatchObject({ kind: "claimed", attempt: i });
    // Its run died with its worker, and this would be its last attempt: only run alone (isolated).
    expect(await claimWhenFree(store, t, "w3", 300, false)).toEqual({ kind: "suspect", crashes: 2 });
    expect(await store.claim(t, "w3", 300, "u", { isolated: true })).toMatchObject({ kind: "claimed", attempt: 3 });
    const c = await claimWhenFree(store, t, "w4", 10_000);
    expect(c).toMatchObject({ kind: "publish", outcome: "failed", exhausted: true, attempts: 3 });
    expect((await store.get(t))?.status).toBe("failed");
    expect((await store.get(t))?.error).toContain("never finished");
    expect(await store.published(t, "w4")).toBe("written");
  });

  test("a message for a task this system never recorded is adopted", async () => {
    const t = id();
    expect(await store.claim(t, "w", 10_000, "python-user", { message: "{}" })).toMatchObject({ kind: "claimed", attempt: 1 });
    expect((await store.get(t))?.user_id).toBe("python-user");
  });

  test("a canceled or 503-abandoned delayed task keeps its record until run_at + TTL: its timer message finds it, never adopts it", async () => {
    const delayMs = 7_200_000; // twice the store's TTL (3600 s)
    const pttl = (k: string) => send<number>(redis, k, ["PTTL", k]);
    const keysOf = (t: string) => [store.keys.task(t), store.keys.legacyStatus(t), store.keys.events(t)];
    // Canceled while scheduled: every key outlives the run_at, through the publish and a failed publish.
    const c = id();
    await store.createAt(c, "u", "{}", "", (await redisNow()) + delayMs);
    expect(await store.cancel(c, "api", 10_000)).toMatchObject({ kind: "canceled" });
    for (const k of keysOf(c)) expect(await pttl(k)).toBeGreaterThanOrEqual(delayMs);
    expect(await store.release(c, "api", 0)).toBe("written"); // its publish failed: the next claim publishes
    expect(await store.claim(c, "w", 10_000, "u")).toMatchObject({ kind: "publish", outcome: "canceled" });
    for (const k of keysOf(c)) expect(await pttl(k)).toBeGreaterThanOrEqual(delayMs);
    expect(await store.published(c, "w")).toBe("written");
    for (const k of keysOf(c)) expect(await pttl(k)).toBeGreaterThanOrEqual(delayMs);
    // Told 503: the tombstone outlives the run_at, so the timer message is skipped then.
    const a = id();
    await store.createAt(a, "u", "{}", "", (await redisNow()) + delayMs);
    expect(await store.abandon(a)).toBe(true);
    expect(await pttl(store.keys.task(a))).toBeGreaterThanOrEqual(delayMs);
    expect(await store.claim(a, "w", 10_000, "u", { message: "{}" })).toEqual({ kind: "finished", status: "rejected" });
  });

  test("a copy of the message that arrives before a retry's backoff (back_at) ends is not run: hidden for the rest of the wait", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    await store.claim(t, "a", 10_000, "u");
    expect(await store.retry(t, "a", "429: retry after 60 s", 60_000)).toBe("written");
    const c = await store.claim(t, "b", 10_000, "u");
    expect(c.kind).toBe("busy");
    if (c.kind === "busy") {
      expect(c.leaseLeftMs).toBeGreaterThan(50_000);
      expect(c.leaseLeftMs).toBeLessThanOrEqual(60_000);
    }
    expect(await store.get(t)).toMatchObject({ status: "queued", attempts: 1 });
    // Once the backoff is over, it runs.
    const r = id();
    await store.create(r, "u", "{}");
    await store.claim(r, "a", 10_000, "u");
    await store.retry(r, "a", "boom", 300);
    expect(await claimWhenFree(store, r, "b", 10_000)).toMatchObject({ kind: "claimed", attempt: 2 });
  });

  test("a task recorded anew from its message (adopted, re-queued, or failed by a poison or dead letter) keeps the message's tenant", async () => {
    const body = (t: string) => JSON.stringify({ task_id: t, user_id: "u", content: "x", tenant: "acme" });
    const adopted = id();
    expect(await store.claim(adopted, "w", 10_000, "u", { message: body(adopted) })).toMatchObject({ kind: "claimed" });
    expect(await field(adopted, "tenant")).toBe("acme");
    const requeued = id();
    expect(await store.requeue(requeued, body(requeued), "u")).toMatchObject({ kind: "requeued" });
    expect(await field(requeued, "tenant")).toBe("acme");
    const dead = id();
    expect(await store.deadLettered(dead, "dlq", "u", "acme")).toBe("written");
    expect(await field(dead, "tenant")).toBe("acme");
    const poison = id();
    expect(await store.forceFail(poison, { token: "p", leaseMs: 10_000 }, "bad", "u", "acme")).toBe("written");
    expect(await field(poison, "tenant")).toBe("acme");
    // Without a tenant (no API keys): none written, as create.lua does.
    const plain = id();
    await store.claim(plain, "w", 10_000, "u", { message: JSON.stringify({ task_id: plain, user_id: "u", content: "x" }) });
    expect(await field(plain, "tenant")).toBeNull();
  });

  test("the events list lives as long as the task hash: every renewal of the task's TTL renews the list's (SSE numbering never restarts)", async () => {
    const short = new TaskStore(redis, 60, prefix, 600_000);
    const ev = (t: string) => short.keys.events(t);
    const shorten = async (t: string) => {
      await redis.expire(short.keys.task(t), 5);
      await redis.expire(ev(t), 5);
    };
    // heartbeat
    const h = id();
    await short.create(h, "u", "{}");
    await short.claim(h, "w", 10_000, "u");
    await shorten(h);
    expect(await short.heartbeat(h, "w", 10_000)).toBe(true);
    expect(await redis.ttl(ev(h))).toBeGreaterThan(50);
    // a claim to publish only, and the publish of a failure (no change of status)
    const p = id();
    await short.create(p, "u", "{}");
    await short.claim(p, "w", 10_000, "u");
    await short.fail(p, "w", "gave up");
    await short.release(p, "w", 0);
    await shorten(p);
    expect(await short.claim(p, "w2", 10_000, "u")).toMatchObject({ kind: "publish", outcome: "failed" });
    expect(await redis.ttl(ev(p))).toBeGreaterThan(50);
    await shorten(p);
    expect(await short.published(p, "w2")).toBe("written");
    expect(await redis.ttl(ev(p))).toBeGreaterThan(50);
  });

  test("a refused re-queue leaves the outbox hint of a queued, unsent task: the sweeper still sends it", async () => {
    const t = id();
    await store.create(t, "u", `{"task_id":"${t}"}`); // its API died before the send
    expect(await store.requeue(t)).toEqual({ kind: "not_failed", status: "queued" });
    expect(await store.dueOutbox(0)).toContainEqual({ id: t, body: `{"task_id":"${t}"}` });
  });

  test("a dead-lettered copy of a task whose cancellation was asked (202) records it canceled, not failed", async () => {
    const t = id();
    await store.create(t, "u", "{}");
    await store.claim(t, "w", 300, "u");
    expect(await store.cancel(t, "api", 10_000)).toEqual({ kind: "requested" });
    // Its worker died; the lease ran out; RocketMQ dead-letters the message.
    let w: string | undefined;
    await waitFor(async () => (w = await store.deadLettered(t, "dlq", "u")) !== "not_owner", 10_000, "expired lease");
    expect(w).toBe("canceled");
    expect(await store.get(t)).toMatchObject({ status: "canceled" });
    expect((await store.get(t))?.error).toBeUndefined();
    // Its canceled result is still to publish: the next claim (the stalled re-send's) publishes it.
    expect(await store.claim(t, "w2", 10_000, "u")).toMatchObject({ kind: "publish", outcome: "canceled" });
  });

  test("a poison message fails only a task Redis does not know (issue 8 #10)", async () => {
    const p = id();
    expect(await store.forceFail(p, { token: "p1", leaseMs: 300 }, "bad message", "x")).toBe("written");
    expect(await store.get(p)).toMatchObject({ status: "failed", error: "bad message", user_id: "x" });
    const live = id();
    await store.create(live, "u", "{}");
    await store.claim(live, "w", 10_000, "u");
    expect(await store.forceFail(live, { token: "p", leaseMs: 10_000 }, "bad copy", "u")).toBe("not_owner");
    expect((await store.get(live))?.status).toBe("running");
    // Its failure result is published under the poison copy's claim: another copy waits while that
    // claim lives, takes it over once it ended (the first worker died or stopped), and publishes.
    expect(await store.forceFail(p, { token: "p2", leaseMs: 10_000 }, "bad message", "x")).toBe("held");
    let w: string | undefined;
    await waitFor(async () => (w = await store.forceFail(p, { token: "p2", leaseMs: 10_000 }, "bad message", "x")) !== "held", 10_000, "the first claim's end");
    expect(w).toBe("pending");
    expect(await store.published(p, "p1")).toBe("not_owner");
    expect(await store.published(p, "p2")).toBe("written");
    expect(await store.get(p)).toMatchObject({ status: "failed", error: "bad message" });
    expect(await store.forceFail(p, { token: "p3", leaseMs: 10_000 }, "bad message", "x")).toBe("already_finished");
  });

  test("a dead-lettered copy fails neither a live run nor a task waiting for its retry (issue 8 #10)", async () => {
    const [live, waiting, orphan] = [id(), id(), id()];
    for (const t of [live, waiting, orphan]) await store.create(t, "u", "{}");
    await store.claim(live, "w", 10_000, "u");
    expect(await store.deadLettered(live, "dlq", "u")).toBe("not_owner");
    await store.claim(waiting, "w", 10_000, "u");
    await store.retry(waiting, "w", "boom", 60_000);
    expect(await store.deadLettered(waiting, "dlq", "u")).toBe("not_owner");
    expect((await store.get(waiting))?.status).toBe("queued");
    await store.claim(orphan, "w", 300, "u");
    await waitFor(async () => (await store.deadLettered(orphan, "dlq", "u")) === "written", 10_000, "expired lease");
    expect(await store.get(orphan)).toMatchObject({ status: "failed", error: "dlq" });
  });

  test("stalled: running past its lease or retrying past its delay, unclaimed: returned once a period with its message", async () => {
    const quick = new TaskStore(redis, 3600, prefix, 500, { buckets: 4 });
    const [running, retrying, live, done] = [id(), id(), id(), id()];
    for (const t of [running, retrying, live, done]) await quick.create(t, "u", `{"task_id":"${t}"}`);
    await quick.claim(running, "w", 300, "u");
    await quick.claim(retrying, "w", 300, "u");
    await quick.retry(retrying, "w", "boom", 300);
    await quick.claim(live, "w", 60_000, "u");
    await quick.claim(done, "w", 300, "u");
    await quick.complete(done, "w", { tags: [], score: 0, reason: "" });
    expect(await field(done, "message")).toBeNull();
    const seen: string[] = [];
    await waitFor(async () => {
      for (const s of await quick.stalled(100)) if (s.id === running || s.id === retrying || s.id === live || s.id === done) seen.push(s.id);
      return seen.includes(running) && seen.includes(retrying);
    }, 10_000, "both stalled tasks");
    expect(seen.sort()).toEqual([running, retrying].sort()); // each once, the live and the done one never
    expect(await field(running, "message")).toBe(`{"task_id":"${running}"}`);
    expect(await redis.zScore(quick.stalledKey(done), done)).toBeNull();
    // Handed out at most once a period, whoever asks.
    expect((await quick.stalled(100)).map((s) => s.id)).not.toContain(running);
  });

  test("stalled: a delayed task not claimed STALLED_AFTER_MS after its run_at (its timer message lost) is returned with its message", async () => {
    const quick = new TaskStore(redis, 3600, prefix, 500, { buckets: 4 });
    const [lost, claimed] = [id(), id()];
    const runAt = (await redisNow()) + 200;
    for (const t of [lost, claimed]) await quick.create(t, "u", `{"task_id":"${t}"}`, "", runAt);
    expect((await quick.stalled(100)).map((s) => s.id)).not.toContain(lost); // not due yet
    await waitFor(async () => (await redisNow()) > runAt, 5_000, "run_at to pass");
    await quick.claim(claimed, "w", 60_000, "u");
    const seen: string[] = [];
    await waitFor(async () => {
      for (const s of await quick.stalled(100)) if (s.id === lost || s.id === claimed) seen.push(s.id);
      return seen.includes(lost);
    }, 10_000, "the scheduled task to be stalled");
    expect(seen).toEqual([lost]);
    expect((await quick.stalled(100)).map((s) => s.id)).not.toContain(lost); // once a period
  });

  test("stalled: a parked delayed task is left to its tenant's release; once claimed (the mark dropped) and retried, it is watched again", async () => {
    const quick = new TaskStore(redis, 3600, prefix, 500, { buckets: 4 });
    const [parked, control] = [id(), id()];
    const runAt = (await redisNow()) + 200;
    for (const t of [parked, control]) await quick.create(t, "u", `{"task_id":"${t}"}`, "", runAt);
    await waitFor(async () => (await redisNow()) > runAt, 5_000, "run_at to pass");
    // Its tenant at its limit when its message came (lib/worker/tenant-limits.ts).
    expect(await quick.keepWaiting(parked, true)).toBe("kept");
    const seen: string[] = [];
    await waitFor(async () => {
      for (const s of await quick.stalled(100)) if (s.id === parked || s.id === control) seen.push(s.id);
      return seen.includes(control);
    }, 10_000, "the control task to be stalled");
    // The control (not parked) is re-sent; the parked one is not, a period past its due time too.
    await waitFor(async () => (await redisNow()) > runAt + 1_200, 5_000, "two periods past its due time");
    for (const s of await quick.stalled(100)) if (s.id === parked) seen.push(s.id);
    expect(seen).toEqual([control]);
    // Released, it runs: the claim drops the mark, and a retry is watched as any other.
    expect(await quick.claim(parked, "w", 60_000, "u")).toMatchObject({ kind: "claimed" });
    expect(await field(parked, "parked")).toBeNull();
    expect(await quick.retry(parked, "w", "boom", 100)).toBe("written");
    await waitFor(async () => (await quick.stalled(100)).some((s) => s.id === parked), 10_000, "the retried task to be stalled");
  });

  test("dead letters are kept newest first, capped, with a TTL", async () => {
    await store.deadLetter({ reason: "r1", body: "b1", at: "t" });
    await store.deadLetter({ reason: "r2", body: "b2", at: "t" });
    expect((await store.deadLetters(2)).map((d) => d.reason)).toEqual(["r2", "r1"]);
    expect(await redis.ttl(store.keys.deadLetters)).toBeGreaterThan(86_400);
  });

  if (_name.startsWith("Redis Cluster"))
    test("scripts survive SCRIPT FLUSH (EVALSHA falls back to EVAL); only on the private server", async () => {
      await send(redis, store.keys.task("x"), ["SCRIPT", "FLUSH"]);
      expect(await store.create(id(), "u", "{}")).toBe(true);
    });
});
