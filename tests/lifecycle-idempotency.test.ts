// POST /tasks with an Idempotency-Key against real Redis and RocketMQ: the API as a child process and
// a worker running the recording agent (AGENT=record: every run's start is written outside Redis).
// - 50 concurrent POSTs with one key: one 202, 49 replays (200, Idempotent-Replayed: true) with the
//   same id, one task in Redis, one request message, one agent run, one result message;
// - the same key with another body: 409 idempotency_conflict; another user's same key: its own task;
// - a malformed key: 400 naming the header;
// - a request answered 503 frees its key: the retry gets a new task that runs, never the tombstone;
// - a reservation left by a request that died (an API killed between reserving and sending) is taken
//   over once stale: its unsent task becomes a tombstone, the retry gets a new task.
// - a 202 whose send Redis did not record (a stall just after the broker confirmed it) is recorded by
//   the API's background retry, so a repeat once the key is stale replays the task, never tombstones it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readEvents } from "../scripts/chaos/history.ts";
import { parseConfig } from "../lib/config.ts";
import { createApp } from "../lib/http/app.ts";
import { silentLogger } from "../lib/log.ts";
import { Publisher } from "../lib/mq.ts";
import { scanKeys } from "../lib/redis.ts";
import { send } from "../lib/scripts.ts";
import { fingerprint } from "../lib/state/idempotency.ts";
import { TaskService } from "../lib/submit.ts";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { IdempotentSubmit, STALE_MS } from "../lib/tasks/idempotency.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { messagesInTopic } from "./support/results.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const records = mkdtempSync(join(tmpdir(), "idem-record-"));
let sys: TestSystem;
let base: string;

/** Every run event the recording agent wrote, in this test file. */
const runs = () => readEvents(records);

const post = (body: object, key?: string) =>
  fetch(`${base}/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key !== undefined ? { "idempotency-key": key } : {}) },
    body: JSON.stringify(body),
  });

beforeAll(async () => {
  sys = await testSystem();
  const port = freePort();
  const api = new Service("api.ts", { ...sys.ns.env, API_PORT: String(port), API_HOST: "127.0.0.1" });
  base = `http://127.0.0.1:${port}`;
  new Service("worker.ts", { ...sys.ns.env, AGENT: "record", AGENT_RECORD_DIR: records, AGENT_DELAY_MS: "200" });
  await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 60_000, () => `api ready\n${api.raw.slice(-20).join("\n")}`);
}, 120_000);
afterAll(async () => {
  await stopAll();
  await sys?.close();
  rmSync(records, { recursive: true, force: true });
}, 60_000);

describe("Idempotency-Key", () => {
  test("50 concurrent POSTs with one key: one task, one message, one run, one result; the others replay it", async () => {
    const before = await messagesInTopic(sys.ns, sys.ns.requestTopic);
    const body = { user_id: "idem-user", content: "one paid LLM call, however often the client retries" };
    const answers = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await post(body, "order-4711");
        return { status: res.status, replayed: res.headers.get("idempotent-replayed"), body: (await res.json()) as { task_id: string; status: string } };
      }),
    );
    const ids = new Set(answers.map((a) => a.body.task_id));
    expect(ids.size).toBe(1);
    const [id] = [...ids] as [string];
    expect(answers.filter((a) => a.status === 202)).toHaveLength(1);
    const replays = answers.filter((a) => a.status === 200);
    expect(replays).toHaveLength(49);
    for (const r of replays) expect(r.replayed).toBe("true");

    await sys.waitStatus(id, "done", 60_000);
    // The same key and body later: the finished task, replayed.
    const again = await post(body, "order-4711");
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual({ task_id: id, status: "done" });

    // One task of this user in Redis, one request message, one run, one result message.
    const tasks: string[] = [];
    for await (const batch of scanKeys(sys.redis, `{${sys.ns.redisPrefix}task:*:status}:task`))
      for (const k of batch) if ((await send(sys.redis, k, ["HGET", k, "user_id"])) === "idem-user") tasks.push(k);
    expect(tasks).toEqual([sys.store.keys.task(id)]);
    expect((await messagesInTopic(sys.ns, sys.ns.requestTopic)) - before).toBe(1);
    expect(runs().filter((e) => e.task === id && e.ev === "start")).toHaveLength(1);
    await waitFor(() => sys.results.for(id).length > 0, 30_000, `the result of ${id}`);
    expect(sys.results.for(id)).toHaveLength(1);
  }, 120_000);

  test("the same key with another body: 409 idempotency_conflict; another user's same key: a task of its own", async () => {
    const first = await post({ user_id: "u-conflict", content: "first" }, "k-1");
    expect(first.status).toBe(202);
    const other = await post({ user_id: "u-conflict", content: "second" }, "k-1");
    expect(other.status).toBe(409);
    const err = (await other.json()) as { error: string; message: string };
    expect(err.error).toBe("idempotency_conflict");
    expect(err.message).toContain("k-1");
    const otherUser = await post({ user_id: "u-other", content: "second" }, "k-1");
    expect(otherUser.status).toBe(202);
    expect(((await otherUser.json()) as { task_id: string }).task_id).not.toBe(((await first.json()) as { task_id: string }).task_id);
    // Unknown fields are not part of the request (ignored, as the original did): the same task.
    const extra = await post({ user_id: "u-conflict", content: "first", extra: 1 }, "k-1");
    expect(extra.status).toBe(200);
  });

  test("a malformed key: 400 invalid_idempotency_key naming the header", async () => {
    for (const key of ["", "x".repeat(256), "clé"]) {
      const res = await post({ user_id: "u", content: "c" }, key);
      expect(res.status).toBe(400);
      const err = (await res.json()) as { error: string; message: string; field?: string };
      expect(err.error).toBe("invalid_idempotency_key");
      expect(err.message).toContain("Idempotency-Key");
      expect(err.field).toBe("Idempotency-Key");
    }
    expect((await post({ user_id: "u", content: "c" }, "x".repeat(255))).status).toBe(202);
  });

  test("a request answered 503 frees its key: the retry gets a new task that runs, not the tombstone", async () => {
    const cfg = parseConfig({ ...sys.ns.env, MQ_ENDPOINT: "127.0.0.1:1", MQ_REQUEST_TIMEOUT_MS: "1000", MQ_SEND_BATCH_MAX: "1" });
    const down = new Publisher(cfg, silentLogger, [cfg.MQ_TOPIC_REQUEST]);
    const tasks = new TaskService(cfg, sys.store, down, silentLogger);
    let submits = 0;
    const submit = tasks.submit.bind(tasks);
    tasks.submit = (...args) => (submits++, submit(...args));
    const app = createApp({ cfg, store: sys.store, tasks, log: silentLogger });
    const body = { user_id: "u-503", content: "sent while RocketMQ was away" };
    try {
      // Five at once: the four repeats share the first one's 503 instead of each trying in turn.
      const answers = await Promise.all(Array.from({ length: 5 }, () => app.handle(new Request("http://local/tasks", {
        method: "POST", headers: { "content-type": "application/json", "idempotency-key": "retry-me" }, body: JSON.stringify(body),
      }))));
      expect(answers.map((r) => r.status)).toEqual([503, 503, 503, 503, 503]);
      expect(submits).toBe(1);
    } finally {
      await down.close();
    }
    const retry = await post(body, "retry-me");
    expect(retry.status).toBe(202);
    const { task_id } = (await retry.json()) as { task_id: string };
    await sys.waitStatus(task_id, "done", 60_000);
  }, 60_000);

  test("while the first request has no answer, a repeat is never given its task id: 409 idempotency_in_progress after 10 s", async () => {
    // A reservation whose request is still running (or died less than STALE_MS ago): its task is not
    // created yet, so it may still be answered 503 and never run.
    const once = new IdempotentSubmit(sys.ns.config, sys.store, new TaskService(sys.ns.config, sys.store, sys.publisher, silentLogger), silentLogger);
    const body = { user_id: "u-inflight", content: "still being sent" };
    const key = once.records.keyOf("", body.user_id, "inflight-1");
    expect((await once.records.reserve(key, fingerprint(body), crypto.randomUUID())).kind).toBe("reserved");
    const t0 = Date.now();
    const res = await post(body, "inflight-1");
    expect(res.status).toBe(409);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(((await res.json()) as { error: string }).error).toBe("idempotency_in_progress");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(9_000);
  }, 60_000);

  test("with API keys the key is the tenant's: two tenants' same user and key make two tasks", async () => {
    const cfg = { ...sys.ns.config, AUTH_MODE: "keys" as const };
    const apiKeys = new ApiKeys(sys.redis, cfg.REDIS_PREFIX);
    const app = createApp({ cfg, store: sys.store, tasks: new TaskService(cfg, sys.store, sys.publisher, silentLogger), log: silentLogger, tenancy: { auth: "keys", apiKeys } });
    const ids: string[] = [];
    for (const tenant of ["acme", "globex", "acme"]) {
      const { key } = await apiKeys.create(`${tenant}-${sys.ns.id}`);
      const res = await app.handle(new Request("http://local/tasks", {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": "shared-key", authorization: `Bearer ${key}` },
        body: JSON.stringify({ user_id: "same-user", content: "same body" }),
      }));
      expect([200, 202]).toContain(res.status);
      ids.push(((await res.json()) as { task_id: string }).task_id);
    }
    expect(ids[0]).not.toBe(ids[1]);
    expect(ids[2]).toBe(ids[0]); // another key of the same tenant: the same task, replayed
  });

  test("a reservation whose request died is taken over once stale: its unsent task never runs, the retry's does", async () => {
    // What an API killed between reserving the key and sending leaves: the reservation and a queued,
    // unsent task (its outbox hint too, which the sweeper would act on after 30 s).
    const once = new IdempotentSubmit(sys.ns.config, sys.store, new TaskService(sys.ns.config, sys.store, sys.publisher, silentLogger), silentLogger);
    const body = { user_id: "u-crash", content: "the API died mid-submit" };
    const key = once.records.keyOf("", body.user_id, "crash-1");
    const dead = crypto.randomUUID();
    expect((await once.records.reserve(key, fingerprint(body), dead)).kind).toBe("reserved");
    expect(await sys.store.create(dead, body.user_id, JSON.stringify({ task_id: dead, user_id: body.user_id, payload: body.content, action: "generate_profile" }))).toBe(true);
    // Not stale yet: a repeat waits for that request's answer, which never comes (409 after 10 s is
    // not waited for here); aged past STALE_MS it is taken over.
    await send(sys.redis, key, ["HSET", key, "at", String(Date.now() - STALE_MS - 1_000)]);
    const retry = await post(body, "crash-1");
    expect(retry.status).toBe(202);
    const { task_id } = (await retry.json()) as { task_id: string };
    expect(task_id).not.toBe(dead);
    expect(await sys.store.get(dead)).toBeNull(); // a tombstone: GET answers 404, a late send is skipped
    await sys.waitStatus(task_id, "done", 60_000);
    const replay = await post(body, "crash-1");
    expect(replay.status).toBe(200);
    expect(((await replay.json()) as { task_id: string }).task_id).toBe(task_id);
  }, 60_000);

  test("a 202 whose send Redis did not record keeps its task: a repeat once the key is stale replays it, never tombstones it", async () => {
    // Redis stalls just after the broker confirmed the send: the client has its 202, but neither the
    // task's `sent` mark nor the key's `accepted` state landed. A delayed task (due in an hour) stays
    // untouched meanwhile, as a parked or backlogged one would.
    const tasks = new TaskService(sys.ns.config, sys.store, sys.publisher, silentLogger);
    const first = new IdempotentSubmit(sys.ns.config, sys.store, tasks, silentLogger);
    const timedOut = () => Promise.reject(new Error("Redis: command timed out"));
    first.records.accept = timedOut;
    const markSent = sys.store.markSent;
    let stalls = 1;
    sys.store.markSent = (id) => (stalls-- > 0 ? timedOut() : markSent.call(sys.store, id));
    try {
      const body = { user_id: "u-stall", content: "sent, not recorded" };
      const runAt = Date.now() + 3_600_000;
      const answer = await first.submit("stall-1", body, undefined, runAt);
      expect(answer.replayed).toBe(false);
      const id = answer.body.task_id;
      // The API retries the mark in the background once Redis answers again.
      await waitFor(async () => (await sys.redis.hGet(sys.store.keys.task(id), "sent")) === "1", 15_000, "the send to be recorded");

      // A repeat through another API (nothing of the first request in its memory), the key stale.
      const key = first.records.keyOf("", body.user_id, "stall-1");
      await send(sys.redis, key, ["HSET", key, "at", String(Date.now() - STALE_MS - 1_000)]);
      const other = new IdempotentSubmit(sys.ns.config, sys.store, new TaskService(sys.ns.config, sys.store, sys.publisher, silentLogger), silentLogger);
      const repeat = await other.submit("stall-1", body, undefined, runAt);
      expect(repeat).toMatchObject({ replayed: true, body: { task_id: id, status: "scheduled" } });
      expect((await sys.store.get(id))?.status).toBe("scheduled");
    } finally {
      sys.store.markSent = markSent;
      await tasks.settlePending();
    }
  }, 60_000);
});
