// README "Accepting": if the API dies between writing a task and sending its message, the API's own
// outbox sweeper (every 15 s, entries older than 30 s) sends it again. Here `bun api.ts` runs as a
// child process; two tasks are written to Redis with their outbox entries and never sent (as by an
// API that died mid-submit): one 60 s old, one new. The sweeper of the running API must send the old
// one at its next sweep, leave the new one until it is 30 s old, then send it too; a worker runs both.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ACTION, encodeJson } from "../lib/model.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem();
}, 60_000);
afterAll(async () => {
  await stopAll();
  await sys?.close();
}, 60_000);

/** A task written (status and outbox entry) but whose message was never sent. */
async function orphan(createdAt: number) {
  const id = crypto.randomUUID();
  const body = encodeJson({ task_id: id, user_id: "outbox", payload: `orphan ${id}`, action: ACTION }).toString("utf8");
  expect(await sys.store.create(id, "outbox", body, createdAt)).toBe(true);
  return id;
}

test("the API's outbox sweeper sends an entry older than 30 s, and a newer one only once it is 30 s old", async () => {
  const port = freePort();
  const api = new Service("api.ts", { ...sys.ns.env, API_PORT: String(port), API_HOST: "127.0.0.1" });
  const w = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "0" });
  await api.waitForLog("api listening", 60_000);
  const old = await orphan(Date.now() - 60_000);
  const fresh = await orphan(Date.now());
  const swept = (id: string) => api.logs("outbox: task re-published", id).length;
  // The first sweep comes within 15 s of the API's start: it takes the old entry only.
  await api.waitForLog("outbox: task re-published", 30_000, old);
  expect(swept(fresh)).toBe(0);
  expect((await sys.store.dueOutbox(0)).map((e) => e.id)).toEqual([fresh]);
  await sys.waitStatus(old, "done", 60_000);
  // The fresh one is due 30 s after it was written, at a later sweep.
  await api.waitForLog("outbox: task re-published", 60_000, fresh);
  await sys.waitStatus(fresh, "done", 60_000);
  expect(swept(old)).toBe(1);
  expect(await sys.store.dueOutbox(0)).toEqual([]);
  expect(await api.stop()).toBe(0);
  expect(await w.stop()).toBe(0);
}, 150_000);
