// The worker and the API when a dependency fails slowly or in part (issue 8), in-process against
// real RocketMQ (the shared broker, a namespace of this file) and a private redis-server that the
// tests stop, hang (SIGSTOP) and restart. One test per defect; the whole-system fault suite with
// real worker processes lives in tests/faults*.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Agent } from "../lib/agent/types.ts";
import { createApp } from "../lib/app.ts";
import { parseConfig, type Config } from "../lib/config.ts";
import { UnavailableError } from "../lib/errors.ts";
import { createLogger, silentLogger, type Logger } from "../lib/log.ts";
import { ACTION, encodeJson, REQUEST_TAG } from "../lib/model.ts";
import { closeClient, createConsumer, Publisher, type MessageView, type OutgoingMessage } from "../lib/mq.ts";
import { closeRedis, connectRedis, createRedis, scanKeys, type Redis } from "../lib/redis.ts";
import { RedisTimeoutError, send } from "../lib/scripts.ts";
import { sleep } from "../lib/time.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { TombstoneJournal } from "../lib/tasks/tombstone-journal.ts";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { handleMessage, MIN_HIDE_MS, type WorkerContext } from "../lib/worker/handle.ts";
import { Isolation } from "../lib/worker/isolation.ts";
import { ConsumerLoop, type ReceivingConsumer } from "../lib/worker/loop.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, waitFor } from "./support/processes.ts";
import { privateRedis, type PrivateRedis } from "./support/redis-server.ts";

let ns: TestNamespace;
let pr: PrivateRedis;
let publisher: Publisher;
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  ns = await createNamespace({ env: { MQ_RETRY_MAX_TIMES: "2" } });
  pr = await privateRedis();
  publisher = new Publisher(ns.config, silentLogger, [ns.requestTopic, ns.resultTopic]);
  // The shared broker is slow to answer a new producer at times: a few tries.
  for (let i = 0; ; i++) {
    try {
      await publisher.start();
      break;
    } catch (e) {
      if (i >= 2) throw e;
    }
  }
}, 60_000);
afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  await publisher?.close();
  await pr?.close();
  await ns?.cleanup();
}, 60_000);

/** The namespace's config on the private Redis; tests may go below the schema's minimums here. */
function config(over: Partial<Config> = {}): Config {
  return { ...parseConfig({ ...ns.env, REDIS_URL: pr.url, REDIS_TIMEOUT_MS: "500" }), ...over };
}

async function storeOn(cfg: Config): Promise<{ redis: Redis; store: TaskStore }> {
  const redis = createRedis(cfg, silentLogger);
  await connectRedis(redis, 1_000);
  opened.push({ close: () => closeRedis(redis) });
  return { redis, store: TaskStore.fromConfig(redis, cfg) };
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "debug", format: "json", write: (l) => lines.push(JSON.parse(l)) });
  return { log, lines, count: (msg: string) => lines.filter((l) => l.msg === msg).length };
}

async function sendRequest(content = "hello"): Promise<string> {
  const task_id = crypto.randomUUID();
  const body = encodeJson({ task_id, user_id: "outage", payload: content, action: ACTION });
  await publisher.send({ topic: ns.requestTopic, tag: REQUEST_TAG, key: task_id, body });
  return task_id;
}

/** A consumer of the namespace's requests, and a way to wait for one task's message. */
async function requests(cfg: Config) {
  const consumer = createConsumer(cfg, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
  await consumer.startup();
  opened.push({ close: () => closeClient(consumer, silentLogger) });
  const pending = new Map<string, MessageView>();
  return {
    consumer,
    async next(taskId: string, invisibleMs = 15_000): Promise<MessageView> {
      let found: MessageView | undefined;
      await waitFor(async () => {
        for (const m of await consumer.receive(16, invisibleMs)) pending.set(m.keys[0]!, m);
        found = pending.get(taskId);
        pending.delete(taskId);
        return found !== undefined;
      }, 60_000, `the message of ${taskId}`);
      return found!;
    },
  };
}

/** Counts what a publisher sends to the result topic; `failResults` makes the next N result sends throw. */
function countingPublisher(opts: { failResults?: number; requestLostAck?: boolean } = {}) {
  const sent: OutgoingMessage[] = [];
  let failResults = opts.failResults ?? 0;
  const p = {
    async send(m: OutgoingMessage) {
      if (m.topic === ns.resultTopic && failResults > 0) {
        failResults--;
        throw new Error("result topic refused the write (test)");
      }
      const id = await publisher.send(m);
      sent.push(m);
      // The broker stored it, but our side timed out (issue 8 #4).
      if (opts.requestLostAck && m.topic === ns.requestTopic) throw new Error("rocketmq send timed out after 6500 ms (test)");
      return id;
    },
  };
  return { publisher: p as unknown as Publisher, results: () => sent.filter((m) => m.topic === ns.resultTopic) };
}

/**
 * `store` whose `method` rejects its next `times` calls as a Redis command timeout does: before the
 * command ran, or with `landed` after it ran (the answer lost).
 */
function flakyStore(store: TaskStore, method: "recordResult" | "fail" | "retry" | "release", times: number, opts: { landed?: boolean } = {}) {
  let left = times;
  let calls = 0;
  const proxy = new Proxy(store, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== "function") return v;
      if (key !== method) return v.bind(target);
      return async (...args: unknown[]) => {
        calls++;
        if (left > 0) {
          left--;
          if (opts.landed) await v.apply(target, args);
          throw new RedisTimeoutError("Redis did not answer EVALSHA within 500 ms (test)");
        }
        return v.apply(target, args);
      };
    },
  });
  return { store: proxy, calls: () => calls };
}

function context(cfg: Config, store: TaskStore, agent: Agent, log: Logger, pub: Publisher, consumer: ReceivingConsumer): WorkerContext {
  const ctx = { cfg, store, publisher: pub, agent, log };
  return { ...ctx, settler: new ConsumerLoop(consumer, ctx).settler };
}

/** An agent that records its runs and waits `ms` or until aborted (or ignores the abort). */
function testAgent(ms: number, opts: { ignoreAbort?: boolean } = {}) {
  const runs: { task: string; signal: AbortSignal }[] = [];
  const agent: Agent = (task, signal) => {
    runs.push({ task: task.task_id, signal });
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => resolve({ tags: ["t"], score: 1, reason: "test agent" }), ms);
      if (!opts.ignoreAbort)
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          reject(signal.reason);
        }, { once: true });
    });
  };
  return { agent, runs };
}

describe("outages (issue 8)", () => {
  test("#1 Redis down with a backlog: the loop stops receiving (no deliveries burnt), logs once, and runs all after Redis returns", async () => {
    const cfg = config({ WORKER_CONCURRENCY: 8 });
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => sendRequest(`backlog ${i}`)));
    await pr.stop();
    const { store } = await storeOn(cfg);
    const real = createConsumer(cfg, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
    let receives = 0;
    const counting: ReceivingConsumer = {
      startup: () => real.startup(),
      receive: (n, ms) => (receives++, real.receive(n, ms)),
      ack: (m) => real.ack(m),
      changeInvisibleDuration: (m, ms) => real.changeInvisibleDuration(m, ms),
    };
    const cap = capture();
    const { agent, runs } = testAgent(0);
    const loop = new ConsumerLoop(counting, { cfg, store, publisher, agent, log: cap.log }, handleMessage, { baseMs: 200, maxMs: 1_000 });
    opened.push({ close: async () => { await loop.stop(0); await closeClient(real, silentLogger); } });
    await loop.start();
    await waitFor(() => loop.breaker.state === "open", 30_000, "the breaker to open");
    const atOpen = receives;
    await Bun.sleep(4_000); // an observation window: nothing may be received while Redis is down
    expect(receives - atOpen).toBeLessThanOrEqual(1);
    expect(cap.count("Redis or the result topic is failing: receiving paused, probing with backoff")).toBe(1);

    await pr.start();
    for (const id of ids) await waitFor(async () => (await store.get(id).catch(() => null))?.status === "done", 60_000, `task ${id} done`);
    expect(new Set(runs.map((r) => r.task)).size).toBe(ids.length);
    expect(cap.count("dependencies answer again: receiving resumed")).toBeGreaterThanOrEqual(1);
    expect(cap.lines.filter((l) => l.level === "warn" || l.level === "error").length).toBeLessThan(10);
    await loop.stop(0);
  }, 120_000);

  test("#1 after an outage the probe closes the breaker once Redis answers its claim: tasks waiting start before the probe's long run ends", async () => {
    // The probe used to close the breaker only when its handler ended, agent run included (minutes
    // with an LLM): until then the worker ran one task at a time.
    const cfg = config({ WORKER_CONCURRENCY: 8, MQ_INVISIBLE_MS: 10_000 });
    await pr.stop();
    const { store } = await storeOn(cfg);
    const consumer = createConsumer(cfg, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
    // Every run is long, whatever message it is (a quick probe would close the breaker early on the
    // old code too), and its start and end are recorded in the order they happen.
    const events: string[] = [];
    const agent: Agent = async (task, signal) => {
      events.push(`start ${task.task_id}`);
      await sleep(6_000, signal);
      events.push(`end ${task.task_id}`);
      return { tags: ["t"], score: 1, reason: "long test agent" };
    };
    const cap = capture();
    const loop = new ConsumerLoop(consumer, { cfg, store, publisher, agent, log: cap.log }, handleMessage, { baseMs: 200, maxMs: 1_000 });
    opened.push({ close: async () => { await loop.stop(0); await closeClient(consumer, silentLogger); } });
    await loop.start();
    // Three claims fail against the stopped Redis: the breaker opens.
    const openers = await Promise.all(Array.from({ length: 3 }, (_, i) => sendRequest(`opener ${i}`)));
    await waitFor(() => loop.breaker.state === "open", 30_000, "the breaker to open");
    // Sent while it is open, so they wait visible in the broker when the probe is let through: the
    // probe is one of them or an opener (a long run either way), never an empty receive (which closes
    // the breaker at once).
    const waiting = await Promise.all(Array.from({ length: 3 }, (_, i) => sendRequest(`waiting ${i}`)));
    await pr.start();
    for (const id of [...waiting, ...openers])
      await waitFor(async () => (await store.get(id).catch(() => null))?.status === "done", 60_000, `task ${id} done`);
    await loop.stop(0);

    // The probe is the first run: no claim succeeds before Redis is back, and until the probe claims
    // the breaker lets nothing else through.
    const probe = events[0]!.slice("start ".length);
    const probeEnd = events.indexOf(`end ${probe}`);
    expect(probeEnd).toBeGreaterThan(0);
    // Causal, not timed: each waiting task's run had started when the probe's run ended ...
    const startedAfterProbe = waiting.filter((id) => id !== probe && !(events.indexOf(`start ${id}`) < probeEnd));
    expect(startedAfterProbe).toEqual([]);
    // ... and so says the task record (GET /tasks/:id): started_at before the probe's finished_at.
    const probeView = await store.get(probe);
    for (const id of waiting.filter((w) => w !== probe)) {
      const view = await store.get(id);
      expect(Date.parse(view!.started_at!)).toBeLessThan(Date.parse(probeView!.finished_at!));
    }
    for (const id of [...waiting, ...openers]) expect(events.filter((e) => e === `start ${id}`).length).toBe(1);
    // Closed once (by the probe's claim), and its later clean end logs nothing more.
    expect(cap.count("Redis or the result topic is failing: receiving paused, probing with backoff")).toBe(1);
    expect(cap.count("dependencies answer again: receiving resumed")).toBe(1);
  }, 120_000);

  test("#2 Redis hanging: POST and GET answer 503 within REDIS_TIMEOUT_MS + 1 s; a task told 503 never runs", async () => {
    const cfg = config();
    const { redis, store } = await storeOn(cfg);
    const tasks = new TaskService(cfg, store, publisher, silentLogger);
    const app = createApp({ cfg, store, tasks, log: silentLogger });
    pr.pause();
    try {
      let t0 = Date.now();
      const res = await app.handle(new Request("http://local/tasks", {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "hung", content: "x" }),
      }));
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toBe("redis_unavailable");
      expect(Date.now() - t0).toBeLessThan(cfg.REDIS_TIMEOUT_MS + 1_000);
      t0 = Date.now();
      const get = await app.handle(new Request(`http://local/tasks/${crypto.randomUUID()}`));
      expect(get.status).toBe(503);
      expect(Date.now() - t0).toBeLessThan(cfg.REDIS_TIMEOUT_MS + 1_000);
    } finally {
      pr.resume();
    }
    // The create may have landed once Redis woke up: its tombstone lands too, and nothing is queued.
    await waitFor(() => tasks.pendingAbandons === 0, 15_000, "the tombstone to be written");
    for await (const batch of scanKeys(redis, `{${cfg.REDIS_PREFIX}task:*:status}:task`))
      for (const k of batch) expect(await redis.hGet(k, "user_id")).not.toBe("hung");
  }, 60_000);

  /**
   * An API whose next create reaches Redis just as Redis hangs, and executes once the API has given up
   * on it (REDIS_TIMEOUT_MS): Redis wakes the moment the API logs the 503, so what the API does next
   * (free an Idempotency-Key, the background tombstone) finds Redis up. Redis has served a create
   * before, as a running one has (a fresh Redis without the create script would answer the late
   * EVALSHA with NOSCRIPT). `clock`: whether this API has read Redis's clock yet, so that its create
   * carries a deadline (lib/state/redis-clock.ts); without, the late create lands, as on an API's
   * first create or before the deadline existed.
   */
  async function apiWithLateCreate(cfg: Config, opts: { clock: boolean; journal?: TombstoneJournal }) {
    const { redis, store } = await storeOn(cfg);
    let created: string | undefined;
    let hang = false;
    const createAt = store.createAt.bind(store);
    store.createAt = (id, ...rest) => {
      if (hang) {
        hang = false;
        created = id;
        pr.pause();
      }
      return createAt(id, ...rest);
    };
    const log = createLogger({ level: "debug", format: "json", write: (l) => {
      if ((JSON.parse(l) as { msg: string }).msg === "task not accepted: Redis unavailable") pr.resume();
    } });
    const tasks = new TaskService(cfg, store, publisher, log, opts.journal);
    const app = createApp({ cfg, store, tasks, log });
    const post = (key?: string) => postLateCreate(app, key);
    if (opts.clock) {
      expect((await post()).status).toBe(202);
      await store.clock!.sample();
      expect(store.clock!.answerBy()).toBeNumber();
    } else {
      const other = await storeOn(cfg);
      expect(await other.store.create(crypto.randomUUID(), "late-create", "{}")).toBe(true);
    }
    hang = true;
    return { redis, store, tasks, app, post, created: () => created! };
  }

  /** The POST of apiWithLateCreate's tests, to any API (`key`: its Idempotency-Key). */
  function postLateCreate(app: ReturnType<typeof createApp>, key?: string) {
    return app.handle(new Request("http://local/tasks", {
      method: "POST", headers: { "content-type": "application/json", ...(key ? { "idempotency-key": key } : {}) },
      body: JSON.stringify({ user_id: "late-create", content: "x" }),
    }));
  }

  /** One outbox sweep now, for hints of any age: the lock an earlier test's sweep took is dropped first. */
  async function sweepNow(tasks: TaskService, store: TaskStore): Promise<number> {
    await send(store.redis, store.keys.outboxLock, ["DEL", store.keys.outboxLock]);
    return tasks.sweepOutbox(0);
  }

  test("#2 a create that reaches Redis after the API gave up on it refuses itself: nothing lands, nothing for the outbox to send", async () => {
    const cfg = config();
    const a = await apiWithLateCreate(cfg, { clock: true });
    expect((await a.post()).status).toBe(503);
    await a.store.ping(); // answered after the late create, on the same connection
    // The API dies before any tombstone is written: what is in Redis is what the create left.
    await closeRedis(a.redis);
    const b = await storeOn(cfg);
    expect(await b.redis.hGetAll(b.store.keys.task(a.created()))).toEqual({});
    const tasksB = new TaskService(cfg, b.store, publisher, silentLogger);
    await sweepNow(tasksB, b.store);
    expect(await b.redis.exists(b.store.keys.task(a.created()))).toBe(0);
    await a.tasks.settlePending();
  }, 60_000);

  test("#2 a 503 whose create lands late keeps its Idempotency-Key until the tombstone is written: the retry, after that API died, gets the one task", async () => {
    const cfg = config();
    const a = await apiWithLateCreate(cfg, { clock: false });
    const key = `late-${crypto.randomUUID()}`;
    const res = await a.post(key);
    expect(res.status).toBe(503);
    expect(a.tasks.tombstonePending(a.created())).toBe(true);
    // API A dies before its tombstone is written (its Redis connection gone, the retry in memory lost).
    await closeRedis(a.redis);
    const b = await storeOn(cfg);
    expect((await b.store.get(a.created()))?.status).toBe("queued"); // the create did land

    // Another API's outbox sweeper sends the task: the client was told 503, yet it will run ...
    const tasksB = new TaskService(cfg, b.store, publisher, silentLogger);
    expect(await sweepNow(tasksB, b.store)).toBeGreaterThanOrEqual(1);
    expect(await b.redis.hGet(b.store.keys.task(a.created()), "sent")).toBe("1");
    // ... so the client's retry with its key must name that task, not make a second one.
    const retry = await postLateCreate(createApp({ cfg, store: b.store, tasks: tasksB, log: silentLogger }), key);
    expect(retry.status).toBe(200);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(((await retry.json()) as { task_id: string }).task_id).toBe(a.created());
    await a.tasks.settlePending(); // stops A's retry timer (its Redis is closed: nothing written)
  }, 60_000);

  test("#2 an API that died with a tombstone pending writes it from its journal at its next start, before its first outbox sweep: the task told 503 never runs", async () => {
    const cfg = config();
    const path = join(tmpdir(), `tombstones-${crypto.randomUUID()}.log`);
    const a = await apiWithLateCreate(cfg, { clock: false, journal: new TombstoneJournal(path, silentLogger) });
    expect((await a.post()).status).toBe(503);
    expect(a.tasks.tombstonePending(a.created())).toBe(true);
    // API A dies before its tombstone is written: its Redis connection gone, its memory lost.
    await closeRedis(a.redis);
    const b = await storeOn(cfg);
    expect((await b.store.get(a.created()))?.status).toBe("queued"); // the create did land
    // Restarted on the same journal (api.ts: before its first sweep).
    const tasksB = new TaskService(cfg, b.store, publisher, silentLogger, new TombstoneJournal(path, silentLogger));
    expect(await tasksB.recoverTombstones()).toBe(1);
    expect(await b.redis.hGet(b.store.keys.task(a.created()), "status")).toBe("rejected");
    await sweepNow(tasksB, b.store);
    expect(await b.redis.hGet(b.store.keys.task(a.created()), "sent")).toBeNull(); // never sent
    expect(existsSync(path)).toBe(false); // nothing pending: the journal is gone
    await a.tasks.settlePending();
  }, 60_000);

  test("#2 an API shutting down writes the tombstones still pending before it closes Redis; the retry then makes a new task", async () => {
    const cfg = config();
    const a = await apiWithLateCreate(cfg, { clock: false });
    const key = `late-${crypto.randomUUID()}`;
    expect((await a.post(key)).status).toBe(503);
    expect(a.tasks.pendingAbandons).toBe(1);
    // api.ts's shutdown step, well before the background retry's first tick (1 s).
    await a.tasks.settlePending();
    expect(a.tasks.pendingAbandons).toBe(0);
    expect(await a.redis.hGet(a.store.keys.task(a.created()), "status")).toBe("rejected");
    const retry = await a.post(key);
    expect(retry.status).toBe(202);
    expect(((await retry.json()) as { task_id: string }).task_id).not.toBe(a.created());
  }, 60_000);

  test("#3 self-fencing: a run whose heartbeats stop reaching Redis aborts before its lease ends and never publishes", async () => {
    const cfg = config({ MQ_INVISIBLE_MS: 4_000 }); // fenced 2 s after the last heartbeat that got through
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("fence me");
    const m = await req.next(id);
    const { agent, runs } = testAgent(60_000);
    const pub = countingPublisher();
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    const handled = handleMessage(m, ctx, new AbortController().signal);
    await waitFor(async () => (await store.get(id))?.status === "running", 10_000, "running");
    pr.pause();
    const t0 = Date.now();
    let outcome: string;
    try {
      outcome = await handled;
    } finally {
      pr.resume();
    }
    expect(outcome).toBe("lost");
    expect(Date.now() - t0).toBeLessThan(cfg.MQ_INVISIBLE_MS);
    expect(String(runs[0]!.signal.reason)).toContain("fenced");
    expect(pub.results()).toEqual([]);
    // Redis back: the fenced run's claim is handed back, not counted as an attempt.
    await waitFor(async () => (await store.get(id))?.status === "queued", 15_000, "the fenced claim to be released");
    expect((await store.get(id))?.attempts).toBe(0);
    await req.consumer.ack(m).catch(() => {});
  }, 60_000);

  test("#4 a send that timed out but reached the broker: 503, and the late message does not run the task", async () => {
    const cfg = config();
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const lost = countingPublisher({ requestLostAck: true });
    const tasks = new TaskService(cfg, store, lost.publisher, silentLogger);
    const err = await tasks.submit({ user_id: "late", content: "late message" }).catch((e) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).code).toBe("rocketmq_unavailable");
    // The message the broker stored arrives; the task is a tombstone: skipped, the agent never runs.
    const { agent, runs } = testAgent(0);
    let taskId = "";
    await waitFor(async () => {
      for (const m of await req.consumer.receive(16, 15_000)) {
        const body = JSON.parse(m.body.toString("utf8")) as { user_id: string; task_id: string };
        if (body.user_id !== "late") continue;
        taskId = body.task_id;
        expect(await handleMessage(m, context(cfg, store, agent, silentLogger, publisher, req.consumer), new AbortController().signal)).toBe("skipped");
        return true;
      }
      return false;
    }, 30_000, "the late message");
    expect(runs).toEqual([]);
    expect(await store.get(taskId)).toBeNull(); // GET answers 404
  }, 60_000);

  test("#5 the result topic failing: only the publish is retried, with the message kept in hand; the agent runs once, attempts stay 1", async () => {
    const cfg = config();
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("publish later");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher({ failResults: 1 });
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    // The first publish fails; the same handling retries it (no redelivery, no delivery spent).
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(runs.length).toBe(1);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1, result: { reason: "test agent" } });
    expect(pub.results().length).toBe(1);
  }, 60_000);

  test("#5 a publish still failing at shutdown hands the message back; the next claim publishes the recorded result without running the agent", async () => {
    const cfg = config();
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("publish after a restart");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher({ failResults: 1_000 });
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    const shutdown = new AbortController();
    const first = handleMessage(await req.next(id), ctx, shutdown.signal);
    await waitFor(async () => (await store.get(id))?.status === "running" && runs.length === 1, 10_000, "the result recorded");
    shutdown.abort();
    expect(await first).toBe("handed_back");
    expect((await store.get(id))?.status).toBe("running"); // result recorded, not yet out
    const ok = countingPublisher({ failResults: 0 });
    expect(await handleMessage(await req.next(id), context(cfg, store, agent, silentLogger, ok.publisher, req.consumer), new AbortController().signal)).toBe("done");
    expect(runs.length).toBe(1);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1 });
    expect(ok.results().length).toBe(1);
  }, 60_000);

  test("#5 a poison message's failure result still unpublished at shutdown is published by its next delivery", async () => {
    // (Before: the next delivery found the task failed, acked the message, and that result never went out.)
    const cfg = config();
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = crypto.randomUUID();
    const body = encodeJson({ task_id: id, user_id: "outage" }); // no payload: cannot be processed
    await publisher.send({ topic: ns.requestTopic, tag: REQUEST_TAG, key: id, body });
    const { agent, runs } = testAgent(0);
    const refused = countingPublisher({ failResults: 1_000 });
    const shutdown = new AbortController();
    const first = handleMessage(await req.next(id), context(cfg, store, agent, silentLogger, refused.publisher, req.consumer), shutdown.signal);
    await waitFor(async () => (await store.get(id))?.status === "failed", 10_000, "the task failed");
    shutdown.abort();
    expect(await first).toBe("handed_back");
    const ok = countingPublisher();
    expect(await handleMessage(await req.next(id), context(cfg, store, agent, silentLogger, ok.publisher, req.consumer), new AbortController().signal)).toBe("poison");
    expect(ok.results().map((r) => JSON.parse(String(r.body)))).toEqual([expect.objectContaining({ task_id: id, status: "failed", result: null })]);
    expect((await store.get(id))?.error).toContain("message could not be processed");
    expect((await store.deadLetters()).filter((d) => d.task_id === id).length).toBe(1); // set aside once
    expect(runs.length).toBe(0);
  }, 60_000);

  test("#5 a publish retried for longer than the lease keeps the claim: the stalled-task check does not re-send the task, its result goes out once", async () => {
    // (Before: the lease ran out while only the publish was retried, the reaper re-sent the task, and
    // its next claim published the recorded result a second time.)
    const cfg = config({ MQ_INVISIBLE_MS: 3_000, STALLED_AFTER_MS: 500 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("published past its lease");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher({ failResults: 3 }); // retried after 2, 4 and 8 s: 14 s, a 3 s lease
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    let settled = false;
    const handled = handleMessage(await req.next(id), ctx, new AbortController().signal).finally(() => (settled = true));
    const resent: string[] = [];
    while (!settled) {
      for (const s of await store.stalled(100)) if (s.id === id) resent.push(s.id);
      await sleep(250);
    }
    expect(await handled).toBe("done");
    expect(resent).toEqual([]);
    expect(runs.length).toBe(1);
    expect(pub.results().length).toBe(1);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1 });
  }, 60_000);

  test("#5 a final failure whose publish throws is recorded failed at once, and its failure result is published on retry", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("fail and publish later");
    const agent: Agent = async () => {
      throw new Error("agent broke");
    };
    const pub = countingPublisher({ failResults: 1 });
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("failed");
    expect(await store.get(id)).toMatchObject({ status: "failed", error: "Error: agent broke" });
    expect(pub.results().map((r) => JSON.parse(r.body.toString()).status)).toEqual(["failed"]);
  }, 60_000);

  // A run's final Redis write failing on a blip (issue 8 #10). Before: it threw to the consumer loop
  // with the heartbeat already stopped; the claim ran out and the next claim took the run for a crash
  // (with MAX_ATTEMPTS = 1 the task of an agent that succeeded failed "its runs never finished"), or
  // ran the agent again.
  test("#10 the result's record failing once (a Redis timeout): retried in place; done, the agent run once, its result published once", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("record after a blip");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher();
    const flaky = flakyStore(store, "recordResult", 1);
    const ctx = context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(flaky.calls()).toBe(2);
    expect(runs.length).toBe(1);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1, result: { reason: "test agent" } });
    expect(pub.results().map((r) => JSON.parse(r.body.toString()).status)).toEqual(["done"]);
  }, 60_000);

  test("#10 a result record that landed but lost its answer: the claim is dropped, the next claim publishes it; the agent runs once", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("recorded, answer lost");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher();
    const flaky = flakyStore(store, "recordResult", 1, { landed: true });
    const ctx = context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer);
    // Its repeat finds the result recorded ("not_owner"): which outcome landed is the next claim's to read.
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("handed_back");
    expect(pub.results()).toEqual([]);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(runs.length).toBe(1);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1, result: { reason: "test agent" } });
    expect(pub.results().length).toBe(1);
  }, 60_000);

  test("#10 a final failure's record failing once: the task fails with its agent's error, not as a run that died", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("fail after a blip");
    const agent: Agent = async () => {
      throw new Error("agent broke");
    };
    const pub = countingPublisher();
    const flaky = flakyStore(store, "fail", 1);
    const ctx = context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("failed");
    expect(await store.get(id)).toMatchObject({ status: "failed", attempts: 1, error: "Error: agent broke" });
    expect(pub.results().map((r) => JSON.parse(r.body.toString()).status)).toEqual(["failed"]);
  }, 60_000);

  test("#10 a retry's record failing once: the task waits for its retry, attempt 1 counted, and its next run ends done", async () => {
    const cfg = config({ MAX_ATTEMPTS: 2, RETRY_BASE_MS: 1_000 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("retry after a blip");
    let calls = 0;
    const agent: Agent = async () => {
      if (++calls === 1) throw new Error("first try broke");
      return { tags: ["t"], score: 1, reason: "second try" };
    };
    const pub = countingPublisher();
    const flaky = flakyStore(store, "retry", 1);
    const ctx = context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("retry");
    expect(await store.get(id)).toMatchObject({ status: "queued", attempts: 1, error: "first try broke" });
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(calls).toBe(2);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 2 });
    expect(pub.results().length).toBe(1);
  }, 60_000);

  test("#10 a result record still failing at shutdown: the claim released, the run not counted; the next claim runs it, not failed as died", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("record fails until shutdown");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher();
    const flaky = flakyStore(store, "recordResult", 1_000);
    const shutdown = new AbortController();
    const first = handleMessage(await req.next(id), context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer), shutdown.signal);
    await waitFor(() => flaky.calls() >= 2, 10_000, "the record retried");
    shutdown.abort();
    expect(await first).toBe("handed_back");
    expect(await store.get(id)).toMatchObject({ status: "queued", attempts: 0 });
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(runs.length).toBe(2);
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1 });
    expect(pub.results().length).toBe(1);
  }, 60_000);

  test("#10 the hand-back's release at shutdown failing once: retried; the run not counted, the next claim runs it, not failed as died", async () => {
    const cfg = config({ MAX_ATTEMPTS: 1 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("handed back through a blip");
    const { agent, runs } = testAgent(60_000);
    const pub = countingPublisher();
    const flaky = flakyStore(store, "release", 1);
    const shutdown = new AbortController();
    const first = handleMessage(await req.next(id), context(cfg, flaky.store, agent, silentLogger, pub.publisher, req.consumer), shutdown.signal);
    await waitFor(() => runs.length === 1, 10_000, "the run to start");
    shutdown.abort();
    expect(await first).toBe("handed_back");
    expect(flaky.calls()).toBe(2);
    expect(await store.get(id)).toMatchObject({ status: "queued", attempts: 0 });
    const ctx = context(cfg, store, testAgent(0).agent, silentLogger, pub.publisher, req.consumer);
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("done");
    expect(await store.get(id)).toMatchObject({ status: "done", attempts: 1 });
    expect(pub.results().length).toBe(1);
  }, 60_000);

  test("#6 a task whose runs all died (its agent kills the worker) is failed with the reason at the next claim, not run again", async () => {
    const cfg = config({ MAX_ATTEMPTS: 2 });
    const { redis, store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("kills its worker");
    // Two runs began, and their workers died (300 ms leases that nobody renewed).
    for (const w of ["dead-1", "dead-2"])
      await waitFor(async () => (await store.claim(id, w, 300, "outage", { isolated: true })).kind === "claimed", 10_000, `claim by ${w}`);
    await waitFor(async () => (await store.get(id))?.status === "running", 1_000, "running");
    const { agent, runs } = testAgent(0);
    const pub = countingPublisher();
    const ctx = context(cfg, store, agent, silentLogger, pub.publisher, req.consumer);
    const m = await req.next(id);
    // Redis and this host share a clock here: wait for the last lease to end.
    await waitFor(async () => Number(await redis.hGet(store.keys.task(id), "lease_until")) < Date.now() - 50, 10_000, "the last lease to end");
    expect(await handleMessage(m, ctx, new AbortController().signal)).toBe("failed");
    expect(runs).toEqual([]);
    expect((await store.get(id))?.error).toContain("never finished");
    expect(pub.results().map((r) => JSON.parse(r.body.toString()).status)).toEqual(["failed"]);
  }, 60_000);

  test("#6 a task whose run died with its worker runs its last attempt alone: runs already claimed finish first, new claims wait", async () => {
    const cfg = config({ MAX_ATTEMPTS: 2 });
    const { redis, store } = await storeOn(cfg);
    const req = await requests(cfg);
    const [a, suspect, b] = [await sendRequest("A"), await sendRequest("suspect"), await sendRequest("B")];
    const [ma, ms, mb] = [await req.next(a), await req.next(suspect), await req.next(b)];
    // The suspect's first run died with its worker (a 300 ms lease nobody renewed).
    expect((await store.claim(suspect, "dead", 300, "outage")).kind).toBe("claimed");
    await waitFor(async () => Number(await redis.hGet(store.keys.task(suspect), "lease_until")) < Date.now() - 50, 10_000, "the dead lease to end");
    const spans = new Map<string, { start: number; end?: number }>();
    const agent: Agent = async (task) => {
      const span: { start: number; end?: number } = { start: Date.now() };
      spans.set(task.task_id, span);
      await Bun.sleep(task.task_id === a ? 1_500 : task.task_id === suspect ? 1_000 : 10);
      span.end = Date.now();
      return { tags: ["t"], score: 1, reason: "test agent" };
    };
    const isolation = new Isolation();
    const ctx = { ...context(cfg, store, agent, silentLogger, publisher, req.consumer), isolation };
    const never = new AbortController().signal;
    const runA = handleMessage(ma, ctx, never);
    await waitFor(() => spans.has(a), 10_000, "A running");
    const runS = handleMessage(ms, ctx, never);
    await waitFor(() => isolation.busy, 10_000, "the suspect to take the process");
    const runB = handleMessage(mb, ctx, never);
    expect(await Promise.all([runA, runS, runB])).toEqual(["done", "done", "done"]);
    expect(spans.get(suspect)!.start).toBeGreaterThanOrEqual(spans.get(a)!.end!);
    expect(spans.get(b)!.start).toBeGreaterThanOrEqual(spans.get(suspect)!.end!);
    expect((await store.get(suspect))?.attempts).toBe(2);
  }, 60_000);

  test("#7 an agent that ignores its AbortSignal loses its slot at TASK_TIMEOUT_MS + TASK_ABORT_GRACE_MS; failed, not retried (it may still run)", async () => {
    // Attempts are left: a retry would run beside the ignored run, so the task is failed instead.
    const cfg = config({ TASK_TIMEOUT_MS: 300, TASK_ABORT_GRACE_MS: 300, MAX_ATTEMPTS: 3 });
    const { store } = await storeOn(cfg);
    const req = await requests(cfg);
    const id = await sendRequest("stubborn");
    const { agent } = testAgent(3_600_000, { ignoreAbort: true });
    const ctx = context(cfg, store, agent, silentLogger, publisher, req.consumer);
    const t0 = Date.now();
    expect(await handleMessage(await req.next(id), ctx, new AbortController().signal)).toBe("failed");
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await store.get(id))?.error).toContain("timed out after 300 ms");
    expect((await store.get(id))?.error).toContain("ignored its AbortSignal");
  }, 60_000);

  test("#8 a heartbeat in flight when a run is handed back does not re-hide the message for the full invisibility", async () => {
    const cfg = config({ MQ_INVISIBLE_MS: 3_000 }); // a heartbeat every second
    const { store: base } = await storeOn(cfg);
    let beatStarted!: () => void;
    const started = new Promise<void>((r) => (beatStarted = r));
    let beatDone!: () => void;
    const done = new Promise<void>((r) => (beatDone = r));
    // Redis answers this heartbeat slowly: the run ends while it is in flight.
    const slow = Object.assign(Object.create(base) as TaskStore, {
      heartbeat: async (id: string, token: string, ms: number) => {
        beatStarted();
        await Bun.sleep(600);
        const r = await base.heartbeat(id, token, ms);
        setTimeout(beatDone, 50);
        return r;
      },
    });
    const req = await requests(cfg);
    const id = await sendRequest("hand me back");
    const m = await req.next(id);
    const hides: number[] = [];
    const recording: ReceivingConsumer = {
      startup: async () => {},
      receive: async () => [],
      ack: (x) => req.consumer.ack(x),
      changeInvisibleDuration: async (x, ms) => {
        hides.push(ms);
        await req.consumer.changeInvisibleDuration(x, ms);
      },
    };
    const { agent } = testAgent(60_000);
    const shutdown = new AbortController();
    const ctx = context(cfg, slow, agent, silentLogger, publisher, recording);
    const handled = handleMessage(m, ctx, shutdown.signal);
    await started;
    shutdown.abort();
    expect(await handled).toBe("handed_back");
    await done;
    await ctx.settler.hide(m, MIN_HIDE_MS, () => false); // waits for every settle queued before it
    expect(hides.at(-1)).toBe(MIN_HIDE_MS);
  }, 60_000);

  test("#9 SIGTERM while Redis hangs with a command in flight: the API and the worker exit 0 ('shutdown complete'), not at their deadline", async () => {
    // close() of node-redis waits for every reply still due, and a command that timed out stays due
    // (the connection is kept across timeouts): with Redis hung, "close redis" waited until the
    // shutdown deadline and the worker exited 1 (65 s later). closeRedis now stops waiting after the
    // command timeout.
    const env = { ...ns.env, REDIS_URL: pr.url, REDIS_TIMEOUT_MS: "1000", API_PORT: String(freePort()) };
    const api = new Service("api.ts", env);
    const worker = new Service("worker.ts", env);
    try {
      await api.waitForLog("api listening", 60_000);
      await worker.waitForLog("worker running", 60_000);
      pr.pause();
      // A command each that Redis will not answer: the API's create (a 503) and the worker's claim.
      const res = await fetch(`http://127.0.0.1:${env.API_PORT}/tasks`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "hung", content: "x" }),
      });
      expect(res.status).toBe(503);
      await sendRequest("claimed while Redis hangs");
      await worker.waitForLog("message handling failed; it will be redelivered", 60_000);
      const [w, a] = await Promise.all([worker.stop(90_000), api.stop(90_000)]);
      expect({ worker: w, api: a }).toEqual({ worker: 0, api: 0 });
      expect(worker.logs("shutdown complete").length).toBe(1);
      expect(worker.logs("shutdown deadline passed: forcing exit")).toEqual([]);
    } finally {
      pr.resume();
      await Promise.all([worker.stop(5_000), api.stop(5_000)]);
    }
  }, 180_000);
});
