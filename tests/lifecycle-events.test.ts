// Issue 10, items 3 and 4: waiting without polling, task events over Server-Sent Events, progress and
// streamed LLM output. Real servers throughout: the shared Redis and RocketMQ, `bun api.ts` and
// `bun worker.ts` as child processes, and a private cluster-mode redis-server for the notices on
// Redis Cluster. The only fake is the OpenAI-compatible server (tests/support/fake-openai.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis, scanKeys, unlinkKeys, type Redis } from "../lib/redis.ts";
import { send } from "../lib/scripts.ts";
import { TaskStore } from "../lib/store.ts";
import { createApp } from "../lib/http/app.ts";
import { Publisher } from "../lib/mq.ts";
import { TaskService } from "../lib/submit.ts";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { readEvents, waitForFinal } from "../lib/tasks/events.ts";
import { closeTaskNotices, TaskNotices, taskNotices } from "../lib/tasks/notices.ts";
import { createNamespace, testEnv, type TestNamespace } from "./helpers.ts";
import { fakeOpenAI, GOOD, steps } from "./support/fake-openai.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { oneNodeCluster } from "./support/redis-server.ts";
import { testSystem, type TestSystem } from "./support/system.ts";
import { tcpProxy } from "./support/tcp-proxy.ts";

type SseEvent = { id?: string; event: string; data: any };

/** Reads a whole SSE answer (it must end by itself within `ms`); `onEvent` sees each as it comes. */
async function readSse(res: Response, ms = 30_000, onEvent?: (e: SseEvent) => void | Promise<void>): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => reader.cancel(new Error(`SSE stream still open after ${ms} ms`)), ms);
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const e: SseEvent = { event: "message", data: "" };
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const [field, ...rest] = line.split(": ");
          const v = rest.join(": ");
          if (field === "id") e.id = v;
          else if (field === "event") e.event = v;
          else if (field === "data") data.push(v);
        }
        if (!data.length) continue; // a comment (keepalive)
        e.data = JSON.parse(data.join("\n"));
        out.push(e);
        await onEvent?.(e);
      }
    }
  } catch (e) {
    await reader.cancel().catch(() => {}); // hang up
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return out;
}

/** The body's first SSE frame, then hang up. */
async function firstFrame(res: Response): Promise<string> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
  }
  await reader.cancel();
  return buf.slice(0, buf.indexOf("\n\n") + 2);
}

/** Event ids count up by one from 1. */
const consecutive = (events: { id?: string }[], from = 1) => events.every((e, i) => e.id === String(from + i));

// ---------------------------------------------------------------------------------------------
// The store and the notices, on one node and on Redis Cluster (a private cluster-mode server).

let cluster: Awaited<ReturnType<typeof oneNodeCluster>>;

const backends: [string, () => Record<string, string>][] = [
  ["single node (shared Redis)", () => ({ REDIS_URL: testEnv().REDIS_URL! })],
  ["Redis Cluster client, cluster-mode server", () => ({ REDIS_CLUSTER_NODES: cluster.nodes })],
];

beforeAll(async () => {
  cluster = await oneNodeCluster();
}, 30_000);
afterAll(() => cluster?.stop());

describe.each(backends)("task events on %s", (_name, env) => {
  const prefix = `test:ev${crypto.randomUUID().slice(0, 8)}:`;
  let redis: Redis;
  let store: TaskStore;

  beforeAll(async () => {
    redis = createRedis(parseConfig(env()), silentLogger);
    expect(await connectRedis(redis)).toBe(true);
    store = new TaskStore(redis, 3600, prefix, 600_000, { buckets: 4, maxAttempts: 3 });
  });
  afterAll(async () => {
    await closeTaskNotices(redis);
    for await (const batch of scanKeys(redis, `*${prefix}*`)) await unlinkKeys(redis, batch);
    await closeRedis(redis);
  });

  test("every transition appends a status event, every progress report a progress event; the list expires with the task", async () => {
    const t = crypto.randomUUID();
    await store.create(t, "u", "{}");
    const c = await store.claim(t, "tok", 30_000, "u");
    expect(c.kind).toBe("claimed");
    expect(await store.progress(t, "tok", { pct: 50, message: "half" })).toBe(true);
    expect(await store.progress(t, "other", { pct: 60 })).toBe(false); // not the claim's owner
    expect((await store.get(t))?.progress).toEqual({ pct: 50, message: "half" });
    await store.retry(t, "tok", "LLM answered 503", 0);
    const c2 = await store.claim(t, "tok2", 30_000, "u");
    expect(c2).toMatchObject({ kind: "claimed", attempt: 2 });
    expect((await store.get(t))?.progress).toBeUndefined(); // a new run starts without the old progress
    await store.recordResult(t, "tok2", GOOD);
    expect(await store.progress(t, "tok2", { pct: 99 })).toBe(false); // after the result: refused
    await store.published(t, "tok2");

    const events = await readEvents(store, t, "-");
    expect(events.map((e) => (e.type === "status" ? e.status : e.type))).toEqual(["queued", "running", "progress", "queued", "running", "done"]);
    const data = events.map((e) => JSON.parse(e.data));
    expect(data[1]).toMatchObject({ status: "running", attempt: 1 });
    expect(data[2]).toEqual({ at: expect.any(String), pct: 50, message: "half" });
    expect(events.map((e) => e.id)).toEqual(["1", "2", "3", "4", "5", "6"]);
    expect(data[3]).toMatchObject({ status: "queued", error: "LLM answered 503" });
    expect(data[5]).toMatchObject({ status: "done", result: GOOD });
    expect(new Date(data[5].at).getTime()).toBeGreaterThan(Date.now() - 60_000); // ISO time from Redis's clock
    // Resuming after an event gives exactly the rest.
    expect((await readEvents(store, t, events[2]!.id)).map((e) => e.id)).toEqual(events.slice(3).map((e) => e.id));
    // The list lives as long as the task record.
    const ttl = await send<number>(redis, store.keys.events(t), ["PTTL", store.keys.events(t)]);
    expect(ttl).toBeGreaterThan(3_500_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    // Done: the progress is gone from the record (it shrinks), the result is there.
    expect((await store.get(t))?.progress).toBeUndefined();
  });

  test("a failure is one failed event with its error", async () => {
    const t = crypto.randomUUID();
    await store.create(t, "u", "{}");
    await store.claim(t, "tok", 30_000, "u");
    await store.fail(t, "tok", "LLM answered 400: bad model");
    await store.published(t, "tok"); // same status: no second event
    const events = await readEvents(store, t, "-");
    expect(events.map((e) => e.status)).toEqual(["queued", "running", "failed"]);
    expect(JSON.parse(events[2]!.data)).toMatchObject({ error: "LLM answered 400: bad model" });
  });

  test("issue 10's other statuses land as events too: a cancel, a running task's cancel, an operator's requeue", async () => {
    const q = crypto.randomUUID();
    await store.create(q, "u", "{}");
    expect((await store.cancel(q, "c", 5_000)).kind).toBe("canceled");
    await store.published(q, "c");
    const r = crypto.randomUUID();
    await store.create(r, "u", "{}");
    await store.claim(r, "tok", 30_000, "u");
    expect((await store.cancel(r, "c", 5_000)).kind).toBe("requested");
    await store.cancelRun(r, "tok");
    const f = crypto.randomUUID();
    await store.create(f, "u", "{}");
    await store.claim(f, "tok", 30_000, "u");
    await store.fail(f, "tok", "boom");
    await store.published(f, "tok");
    expect((await store.requeue(f)).kind).toBe("requeued");
    const kinds = async (t: string) => (await readEvents(store, t, "-")).map((e) => e.status);
    expect(await kinds(q)).toEqual(["queued", "canceled"]);
    expect(await kinds(r)).toEqual(["queued", "running", "canceled"]);
    expect(await kinds(f)).toEqual(["queued", "running", "failed", "queued"]);
    expect(JSON.parse((await readEvents(store, f, "3"))[0]!.data)).toMatchObject({ requeued: true });
  });

  test("a waiter is woken by the notice of the final transition, not by its deadline", async () => {
    const t = crypto.randomUUID();
    await store.create(t, "u", "{}");
    await store.claim(t, "tok", 30_000, "u");
    const notices = taskNotices(redis, store.keys.eventsChannel, silentLogger);
    expect(await notices.ready(5_000)).toBe(true);
    const t0 = performance.now();
    const waiting = waitForFinal(notices, t, 20_000, () => store.get(t));
    await waitFor(() => notices.waiting(t) === 1, 5_000, "the waiter to register");
    await store.complete(t, "tok", GOOD);
    const view = await waiting;
    expect(view?.status).toBe("done");
    expect(performance.now() - t0).toBeLessThan(10_000); // the deadline was 20 s: a notice woke it
    expect(notices.waiting(t)).toBe(0);
  });
});

test("close() of the notices ends while Redis hangs with a SUBSCRIBE unanswered (the API's shutdown goes on)", async () => {
  // The shared Redis must never be paused: a relay in front of it stops what the client sends.
  const relay = await tcpProxy(testEnv().REDIS_URL!);
  const timeoutMs = 500;
  const redis = createRedis(parseConfig({ REDIS_URL: relay.url, REDIS_TIMEOUT_MS: String(timeoutMs) }), silentLogger);
  try {
    expect(await connectRedis(redis)).toBe(true);
    const notices = new TaskNotices(redis, `test:hang${crypto.randomUUID().slice(0, 8)}:events`, silentLogger);
    relay.hold();
    expect(await notices.ready(100)).toBe(false); // its SUBSCRIBE never gets an answer
    const watch = notices.watch(crypto.randomUUID());
    const closed = notices.close().then(() => "closed" as const);
    // Generous: the point is that close() ends rather than hangs (it used to wait for ever).
    const hung = Bun.sleep(timeoutMs + 3_000).then(() => "hung" as const);
    expect(await Promise.race([closed, hung])).toBe("closed");
    expect(await watch.next(10_000)).toBe("closed");
  } finally {
    relay.close();
    await closeRedis(redis);
  }
}, 30_000);

// ---------------------------------------------------------------------------------------------
// End to end: the API and a worker as processes, as a user runs them.

describe("HTTP: GET /tasks/:id?wait=N and GET /tasks/:id/events", () => {
  let ns: TestNamespace;
  let base: string;
  let redis: Redis;
  let store: TaskStore;
  let api: Service;

  beforeAll(async () => {
    ns = await createNamespace();
    const port = freePort();
    api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1" });
    // 4 progress reports, 500 ms apart (lib/agent/demo.ts)
    new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "2000" });
    base = `http://127.0.0.1:${port}`;
    redis = createRedis(ns.config, silentLogger);
    await connectRedis(redis);
    store = TaskStore.fromConfig(redis, ns.config);
    await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 60_000, "api ready");
  }, 120_000);
  afterAll(async () => {
    await stopAll();
    await closeTaskNotices(redis);
    await closeRedis(redis);
    await ns?.cleanup();
  }, 60_000);

  const submit = async (content = "机械键盘降价了") => {
    const res = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "u1", content }) });
    expect(res.status).toBe(202);
    return ((await res.json()) as { task_id: string }).task_id;
  };

  test("wait=30 answers with the final task as soon as it is done (server-side: < 1 s after finished_at)", async () => {
    const id = await submit();
    const sent = Date.now();
    const res = await fetch(`${base}/tasks/${id}?wait=30`);
    const answered = Date.now();
    expect(res.status).toBe(200);
    const view = (await res.json()) as { status: string; finished_at: string; result: unknown };
    expect(view.status).toBe("done");
    expect(view.result).toMatchObject({ tags: expect.any(Array) });
    const finished = Date.parse(view.finished_at);
    // It waited for the end (the agent alone takes 2 s) and answered right after it; a loaded box
    // may delay the reply, hence 1 s rather than the 200 ms it takes on an idle one.
    expect(finished).toBeGreaterThan(sent);
    expect(answered - finished).toBeLessThan(1_000);
    expect(answered - sent).toBeLessThan(30_000);
  }, 60_000);

  test("a user_id of 100 emoji (100 code points, 200 UTF-16 units) runs too; its wait ends", async () => {
    const res = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "😀".repeat(100), content: "emoji" }) });
    expect(res.status).toBe(202);
    const id = ((await res.json()) as { task_id: string }).task_id;
    expect(((await (await fetch(`${base}/tasks/${id}?wait=30`)).json()) as { status: string }).status).toBe("done");
  }, 60_000);

  test("wait=1 on a task that does not end answers after 1 s with its state; bad values are a 400", async () => {
    const id = crypto.randomUUID();
    await store.create(id, "u1", "{}"); // recorded, never sent: stays queued
    const t0 = performance.now();
    const res = await fetch(`${base}/tasks/${id}?wait=1`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe("queued");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(950);
    for (const q of ["wait=0", "wait=61", "wait=abc", "wait=1.5", "wait=", "wait=1&wait=2"]) {
      const bad = await fetch(`${base}/tasks/${id}?${q}`);
      expect([q, bad.status]).toEqual([q, 400]);
      expect(await bad.json()).toMatchObject({ error: "invalid_parameter", field: "wait" });
    }
    const unknown = await fetch(`${base}/tasks/${crypto.randomUUID()}?wait=30`);
    expect(unknown.status).toBe(404); // at once: there is nothing to wait for
  }, 30_000);

  let streamed: SseEvent[] = [];
  let streamedId = "";

  test("SSE: queued → running → progress… → done, in order, each with an id; the stream ends; GET shows the progress", async () => {
    const id = await submit("SSE please");
    streamedId = id;
    const res = await fetch(`${base}/tasks/${id}/events`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    let progressInGet: unknown;
    streamed = await readSse(res, 30_000, async (e) => {
      if (e.event === "progress" && !progressInGet) progressInGet = ((await (await fetch(`${base}/tasks/${id}`)).json()) as { progress?: unknown }).progress;
    });
    const kinds = streamed.map((e) => (e.event === "status" ? e.data.status : e.event));
    expect(kinds[0]).toBe("queued");
    expect(kinds[1]).toBe("running");
    expect(kinds.at(-1)).toBe("done");
    const progress = streamed.filter((e) => e.event === "progress");
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(kinds.slice(2, -1).every((k) => k === "progress")).toBe(true);
    const pcts = progress.map((e) => e.data.pct as number);
    expect(progress.every((e) => typeof e.data.at === "string")).toBe(true);
    expect(pcts).toEqual([...pcts].sort((a, b) => a - b));
    expect(pcts.at(-1)).toBe(100); // the last report is always written
    expect(streamed.at(-1)!.data).toMatchObject({ status: "done", result: { tags: expect.any(Array) } });
    expect(consecutive(streamed)).toBe(true);
    // The latest progress is in GET while the task runs (the first report comes 1.5 s before the end).
    expect(progressInGet).toMatchObject({ pct: expect.any(Number), message: expect.any(String) });
  }, 60_000);

  test("SSE resume: Last-Event-ID (or ?last_event_id=) gives exactly the remainder; after the end, 204", async () => {
    expect(streamed.length).toBeGreaterThanOrEqual(4);
    const from = streamed[1]!.id!;
    const viaHeader = await readSse(await fetch(`${base}/tasks/${streamedId}/events`, { headers: { "last-event-id": from } }));
    expect(viaHeader).toEqual(streamed.slice(2));
    const viaQuery = await readSse(await fetch(`${base}/tasks/${streamedId}/events?last_event_id=${from}`));
    expect(viaQuery).toEqual(streamed.slice(2));
    const after = await fetch(`${base}/tasks/${streamedId}/events`, { headers: { "last-event-id": streamed.at(-1)!.id! } });
    expect(after.status).toBe(204);
    // A whole replay of a finished task ends by itself too.
    expect(await readSse(await fetch(`${base}/tasks/${streamedId}/events`))).toEqual(streamed);
  }, 30_000);

  test("SSE: a resume that starts before the task ends streams the rest live", async () => {
    const id = await submit("resume live");
    const first: SseEvent[] = [];
    // Read until the task runs, then hang up, as a dropped connection would.
    const res = await fetch(`${base}/tasks/${id}/events`);
    await readSse(res, 30_000, (e) => {
      first.push(e);
      if (e.event === "status" && e.data.status === "running") throw Object.assign(new Error("hang up"), { hangUp: true });
    }).catch((e) => {
      if (!e.hangUp) throw e;
    });
    const rest = await readSse(await fetch(`${base}/tasks/${id}/events`, { headers: { "last-event-id": first.at(-1)!.id! } }));
    const all = [...first, ...rest];
    expect(all.map((e) => (e.event === "status" ? e.data.status : e.event))).toEqual(["queued", "running", ...rest.slice(0, -1).map(() => "progress"), "done"]);
    expect(consecutive(all)).toBe(true);
  }, 60_000);

  test("tenants: the events and the wait of another tenant's task are a 404, as its GET is (in-process, keys mode)", async () => {
    const cfg = ns.config;
    const apiKeys = new ApiKeys(redis, cfg.REDIS_PREFIX);
    const tasks = new TaskService(cfg, store, new Publisher(cfg, silentLogger, [cfg.MQ_TOPIC_REQUEST]), silentLogger); // never started: no POST here
    const app = createApp({ cfg, store, tasks, log: silentLogger, tenancy: { auth: "keys", apiKeys } });
    const [acme, other] = [await apiKeys.create("acme"), await apiKeys.create("other")];
    const id = crypto.randomUUID();
    await store.create(id, "u1", "{}", "acme"); // recorded, never sent: stays queued
    const get = (path: string, key: string) => app.handle(new Request(`http://local${path}`, { headers: { authorization: `Bearer ${key}` } }));
    for (const path of [`/tasks/${id}/events`, `/tasks/${id}?wait=1`]) {
      const res = await get(path, other.key);
      expect([path, res.status]).toEqual([path, 404]);
      expect(await res.json()).toMatchObject({ error: "task_not_found" });
    }
    const mine = await get(`/tasks/${id}/events`, acme.key);
    expect(mine.status).toBe(200);
    const first = await readSse(new Response(await firstFrame(mine)));
    expect(first.map((e) => e.data.status)).toEqual(["queued"]);
    await closeTaskNotices(redis);
  });

  test("SSE resumed after an id the task never reaches ends when the task does, with its final status", async () => {
    const id = await submit("resume ahead");
    const events = await readSse(await fetch(`${base}/tasks/${id}/events?last_event_id=999`));
    expect(events.map((e) => [e.event, e.data.status, e.id])).toEqual([["status", "done", undefined]]);
  }, 60_000);

  test("SSE resumed ahead, the task ending between the route's read and the stream's watch: ends at once, not at the keepalive (in-process)", async () => {
    const id = crypto.randomUUID();
    await store.create(id, "u1", "{}");
    const queued = await store.get(id);
    await redis.set(store.keys.legacyStatus(id), "done", { EX: 600 }); // final now, and no notice will come
    // The route's one read sees the task as it was a moment before: the race, made certain.
    let stale = true;
    const racing = Object.assign(Object.create(store) as TaskStore, {
      get: async (taskId: string) => (taskId === id && stale ? ((stale = false), queued) : store.get(taskId)),
    });
    const tasks = new TaskService(ns.config, racing, new Publisher(ns.config, silentLogger, [ns.config.MQ_TOPIC_REQUEST]), silentLogger); // never started
    const app = createApp({ cfg: ns.config, store: racing, tasks, log: silentLogger });
    const res = await app.handle(new Request(`http://local/tasks/${id}/events?last_event_id=999`));
    expect(res.status).toBe(200);
    const raw = await res.text();
    expect(raw).not.toContain(": keepalive"); // it did not wait SSE_KEEPALIVE_MS for the record's look
    expect((await readSse(new Response(raw))).map((e) => [e.id, e.data.status])).toEqual([[undefined, "done"]]);
    await closeTaskNotices(redis);
  }, 30_000);

  test("SSE of a task the original's workers finished (status string only, no event) ends with a status from the record", async () => {
    const id = crypto.randomUUID();
    await store.create(id, "u1", "{}");
    await redis.set(store.keys.legacyStatus(id), "done", { EX: 600 }); // what the original's worker writes
    const events = await readSse(await fetch(`${base}/tasks/${id}/events`));
    expect(events.map((e) => [e.id, e.event, e.data.status])).toEqual([["1", "status", "queued"], [undefined, "status", "done"]]);
  });

  test("SSE errors are JSON before the stream starts: unknown task 404, bad id 400, bad Last-Event-ID 400", async () => {
    const unknown = await fetch(`${base}/tasks/${crypto.randomUUID()}/events`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: "task_not_found" });
    const badId = await fetch(`${base}/tasks/nope/events`);
    expect(badId.status).toBe(400);
    expect(await badId.json()).toMatchObject({ error: "invalid_task_id" });
    const badResume = await fetch(`${base}/tasks/${streamedId}/events`, { headers: { "last-event-id": "1796095795143-0" } });
    expect(badResume.status).toBe(400);
    expect(await badResume.json()).toMatchObject({ error: "invalid_parameter", field: "Last-Event-ID" });
  });

  test("SIGTERM: the API ends an open event stream, then exits 0 (last: it stops the API)", async () => {
    const id = crypto.randomUUID();
    await store.create(id, "u1", "{}"); // never sent: the stream would last
    let started!: () => void;
    const first = new Promise<void>((r) => (started = r));
    const reading = readSse(await fetch(`${base}/tasks/${id}/events`), 30_000, () => started());
    await first; // the stream is open and has sent its one event
    const t0 = performance.now();
    api.signal("SIGTERM");
    expect(await api.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000); // not the 15 s shutdown deadline
    expect((await reading).map((e) => e.data.status)).toEqual(["queued"]);
  }, 60_000);
});

describe("the streaming OpenAI agent (fake server)", () => {
  // A namespace of its own: its group's worker runs the LLM agent, and no demo worker competes for it.
  let sys: TestSystem;
  const llm = fakeOpenAI();
  beforeAll(async () => {
    sys = await testSystem();
  }, 60_000);
  afterAll(async () => {
    await sys?.close();
    llm.stop();
  }, 60_000);

  test("reports its partial text as progress events, written at most every 250 ms, the whole answer last", async () => {
    const content = "stream it";
    const answer = JSON.stringify(GOOD);
    llm.script(content, steps.streamed(GOOD, 120, 10)); // 10 pieces 120 ms apart
    new Service("worker.ts", { ...sys.ns.env, LLM_BASE_URL: llm.baseUrl, LLM_MODEL: "m" });
    const { task_id: id } = await sys.tasks.submit({ user_id: "u1", content });
    await sys.waitStatus(id, "done", 60_000);
    const events = await readEvents(sys.store, id, "-");
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: "done", result: GOOD });
    const partials = events.filter((e) => e.type === "progress").map((e) => ({ at: Date.parse(JSON.parse(e.data).at), text: JSON.parse(e.data).partial as string }));
    expect(partials.length).toBeGreaterThanOrEqual(2);
    for (const p of partials) expect(answer.startsWith(p.text)).toBe(true);
    expect(partials.at(-1)!.text).toBe(answer); // the whole answer, last
    for (let i = 1; i < partials.length; i++) expect(partials[i]!.text.length).toBeGreaterThanOrEqual(partials[i - 1]!.text.length);
    // Throttled: 10 pieces 120 ms apart, written at most every 250 ms (the last always). Counted over
    // the events' times (`at`, Redis's clock) with one write of slack, not per gap: a write that lands late
    // on a loaded box shortens the next gap without breaking the rule.
    expect(partials.length).toBeLessThan(10);
    expect(partials.length).toBeLessThanOrEqual(Math.floor((partials.at(-1)!.at - partials[0]!.at) / 250) + 2);
    const req = llm.for(content)[0]!;
    expect(req.body).toMatchObject({ stream: true, stream_options: { include_usage: true }, response_format: { type: "json_schema" } });
  }, 90_000);
});
