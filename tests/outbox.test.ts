// README "Accepting": if the API dies between writing a task and sending its message, the API's own
// outbox sweeper (every 15 s, entries older than OUTBOX_SWEEP_AGE_MS) sends it again. Both APIs here
// are `bun api.ts` child processes, with a 30 s age (the default, 11 min, outlasts a refused task's
// tombstone retries): the first one's RocketMQ endpoint is a black hole (it accepts connections and
// never answers), so a POST writes the task and then hangs in the send; the API is killed right then.
// A second API, with the real endpoint, must send the orphan once it is 30 s old, and a worker runs it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";
import { blackHole } from "./support/tcp-proxy.ts";
import { existsSync, writeFileSync } from "node:fs";
import { silentLogger } from "../lib/log.ts";
import { Publisher } from "../lib/mq.ts";
import { send } from "../lib/scripts.ts";
import { ABANDON_RETRY_MS, TaskService } from "../lib/submit.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";

let sys: TestSystem;
let hole: Awaited<ReturnType<typeof blackHole>>;
beforeAll(async () => {
  sys = await testSystem();
  hole = await blackHole();
}, 60_000);
afterAll(async () => {
  await stopAll();
  hole?.close();
  await sys?.close();
}, 60_000);

const api = (env: Record<string, string>) => {
  const port = freePort();
  return { port, svc: new Service("api.ts", { ...sys.ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", OUTBOX_SWEEP_AGE_MS: "30000", ...env }) };
};

test("a task written by an API that died before sending is sent by the outbox sweeper once 30 s old, and runs", async () => {
  const first = api({ MQ_ENDPOINT: `127.0.0.1:${hole.port}`, MQ_REQUEST_TIMEOUT_MS: "5000" });
  await first.svc.waitForLog("api listening", 90_000);
  const before = new Set((await sys.store.dueOutbox(0)).map((e) => e.id));
  const post = fetch(`http://127.0.0.1:${first.port}/tasks`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "outbox", content: "orphan" }),
  }).then((r) => r.status, () => "no answer");
  // The write landed (its outbox entry is there) and the send hangs: the API dies now.
  let orphan = "";
  await waitFor(async () => {
    orphan = (await sys.store.dueOutbox(0)).map((e) => e.id).find((id) => !before.has(id)) ?? "";
    return orphan !== "";
  }, 30_000, "the task's outbox entry");
  const writtenBy = Date.now();
  first.svc.signal("SIGKILL");
  await first.svc.exited;
  expect(await post).toBe("no answer"); // the client never got a 202
  expect((await sys.store.get(orphan))?.status).toBe("queued");

  const second = api({});
  const w = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "0" });
  await second.svc.waitForLog("outbox: task re-published", 90_000, orphan);
  const sentAt = Date.parse(String(second.svc.logs("outbox: task re-published", orphan)[0]!.time));
  expect(sentAt - writtenBy).toBeGreaterThanOrEqual(29_000); // not before it was 30 s old (+ clock granularity)
  await sys.waitStatus(orphan, "done", 60_000);
  expect((await sys.store.dueOutbox(0)).map((e) => e.id)).not.toContain(orphan);
  expect(second.svc.logs("outbox: task re-published", orphan).length).toBe(1);
  expect(await second.svc.stop()).toBe(0);
  expect(await w.stop()).toBe(0);
  await sys.results.settled();
  expect(sys.results.for(orphan).map((r) => r.body.status)).toEqual(["done"]);
}, 180_000);

test("an API restarted after dying with a tombstone pending writes it from its journal before its first sweep: that task is never sent", async () => {
  // What a dead API leaves (worker-outage.test.ts #2 makes it for real): a task whose create landed,
  // unsent, its outbox entry there, and its id in the API's journal as told 503.
  const id = crypto.randomUUID();
  const body = JSON.stringify({ task_id: id, user_id: "outbox", payload: "told 503", action: "agent" });
  expect(await sys.store.create(id, "outbox", body)).toBe(true);
  const journal = join(tmpdir(), `tombstones-${id}.log`);
  writeFileSync(journal, `+${id}\n+${crypto.randomUUID()}\n-`); // a second one, and a line cut by the crash
  const restarted = api({ API_TOMBSTONE_JOURNAL: journal });
  await restarted.svc.waitForLog("api listening", 90_000);
  expect(restarted.svc.logs("tombstones left pending by this API's last process: writing them").length).toBe(1);
  expect(await sys.redis.hGet(sys.store.keys.task(id), "status")).toBe("rejected");
  expect((await sys.store.dueOutbox(0)).map((e) => e.id)).not.toContain(id);
  expect(existsSync(journal)).toBe(false); // all written: the journal is gone
  expect((await fetch(`http://127.0.0.1:${restarted.port}/tasks/${id}`)).status).toBe(404);
  expect(await restarted.svc.stop()).toBe(0);
}, 120_000);

/** One sweep now with the API's default age: the lock another sweep of this namespace took is dropped first. */
async function sweepNow(tasks: TaskService): Promise<number> {
  await send(sys.store.redis, sys.store.keys.outboxLock, ["DEL", sys.store.keys.outboxLock]);
  return tasks.sweepOutbox();
}

test("by default a sweep leaves an unsent task to its API for longer than a refused task's tombstone is retried; an operator's re-queue that was not published goes in 30 s", async () => {
  // An unsent task 5 min old: maybe one told 503 by an API that is cut off from Redis and still
  // retries its tombstone (for 10 min). No client was told 202 for it, so nothing is lost by waiting.
  const cfg = sys.ns.config;
  expect(cfg.OUTBOX_SWEEP_AGE_MS).toBeGreaterThan(ABANDON_RETRY_MS);
  const id = crypto.randomUUID();
  expect(await sys.store.create(id, "outbox", JSON.stringify({ task_id: id, user_id: "outbox", payload: "told 503", action: "agent" }))).toBe(true);
  const age = (ms: number) => sys.redis.zAdd(sys.store.outboxKey(id), { score: Date.now() - ms, value: id });
  await age(5 * 60_000);
  expect(await sweepNow(sys.tasks)).toBe(0);
  expect((await sys.store.dueOutbox(0)).map((e) => e.id)).toContain(id);
  // Past the age, its API is taken for dead: the task is sent (it ran nowhere; a worker's claim
  // would make a second copy harmless anyway).
  await age(cfg.OUTBOX_SWEEP_AGE_MS + 1_000);
  expect(await sweepNow(sys.tasks)).toBe(1);
  expect((await sys.store.dueOutbox(0)).map((e) => e.id)).not.toContain(id);

  // An operator's re-queue (scripts/tasks.ts retry) whose publish fails: its hint is backdated, so
  // that a sweep sends it 30 s later rather than OUTBOX_SWEEP_AGE_MS later.
  const deaf = new Publisher({ ...cfg, MQ_ENDPOINT: `127.0.0.1:${hole.port}`, MQ_REQUEST_TIMEOUT_MS: 1_000 }, silentLogger, [cfg.MQ_TOPIC_REQUEST]);
  try {
    const requeued = crypto.randomUUID();
    const body = JSON.stringify({ task_id: requeued, user_id: "outbox", payload: "retried by an operator", action: "agent" });
    const before = Date.now();
    expect(await new TaskService(cfg, sys.store, deaf, silentLogger).requeue(requeued, body, "outbox")).toMatchObject({ kind: "requeued", published: false });
    const score = (await sys.redis.zScore(sys.store.outboxKey(requeued), requeued))!;
    expect(score).toBeLessThanOrEqual(Date.now() - cfg.OUTBOX_SWEEP_AGE_MS + 30_000);
    expect(score).toBeGreaterThanOrEqual(before - cfg.OUTBOX_SWEEP_AGE_MS + 30_000 - 1_000);
  } finally {
    await deaf.close();
  }
}, 60_000);
