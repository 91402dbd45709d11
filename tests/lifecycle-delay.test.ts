// Delayed tasks (issue 10, item 5), against real Redis and RocketMQ with a real worker process:
// POST /tasks with delay_ms or run_at answers `scheduled`; the task stays scheduled until its time;
// the broker's timer delivers its message to the delay topic, the worker forwards it and claims it:
// it starts no earlier than run_at and within 2 s after (compared on the recorded started_at, the
// claim's Redis time, against run_at). The outbox re-sends an unsent delayed task with its time.
// Past MAX_DELAY_SECONDS: 422 delay_too_long; delay_ms and run_at together: 400.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../lib/http/app.ts";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { ACTION, encodeJson, type TaskView } from "../lib/model.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

/**
 * How late a task may start after run_at. The bound is 2 s. The path: the broker's timer
 * (1 s slots, fired at the slot's start, so the message is early and the worker holds it), the
 * forward to the request topic, the worker's long poll, the claim. Measured on the 2-core box shared
 * with four other test suites: see the README ("Delayed tasks").
 */
const MAX_LATE_MS = 2_000;

let sys: TestSystem;
let app: ReturnType<typeof createApp>;
let worker: Service;

beforeAll(async () => {
  sys = await testSystem();
  // A short limit: the boundary is tested with a task due 10 s later, not an hour.
  const cfg = parseConfig({ ...sys.ns.env, MAX_DELAY_SECONDS: "10" });
  app = createApp({ cfg, store: sys.store, tasks: sys.tasks, log: silentLogger });
  // A quick demo agent: the test is about when runs start.
  worker = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "100", WORKER_CONCURRENCY: "8", LOG_LEVEL: process.env.DELAY_TEST_LOG ?? "info" });
  await worker.waitForLog("worker running", 60_000);
}, 120_000);
afterAll(async () => {
  await sys?.close();
}, 60_000);

const post = (body: unknown) =>
  app.handle(new Request("http://local/tasks", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }));

async function view(id: string): Promise<TaskView> {
  const v = await sys.store.get(id);
  if (!v) throw new Error(`task ${id} not found`);
  return v;
}

describe("delayed tasks", () => {
  test("scheduled until due; starts no earlier than run_at and within 2 s after (delay_ms, run_at, outbox re-send)", async () => {
    // Three POSTs in one event-loop turn (sends of one turn are batched, unless delayed), one with
    // run_at, and one delayed task whose send the outbox makes (its API "died" after the create).
    const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
    const answers = await Promise.all([
      post({ user_id: "delay-user", content: "in 3 s", delay_ms: 3_000 }),
      post({ user_id: "delay-user", content: "in 3 s too", delay_ms: 3_000 }),
      post({ user_id: "delay-user", content: "at a time", run_at: inMs(3_500) }),
    ]);
    const accepted = (await Promise.all(answers.map((r) => r.json()))) as { task_id: string; status: string; run_at: string }[];
    for (const [i, r] of answers.entries()) {
      expect(r.status).toBe(202);
      expect(accepted[i]!.status).toBe("scheduled");
      expect(Date.parse(accepted[i]!.run_at)).toBeGreaterThan(Date.now());
    }
    const orphan = crypto.randomUUID();
    const orphanRunAt = Date.now() + 3_000;
    const body = encodeJson({ task_id: orphan, user_id: "delay-user", payload: "outbox", action: ACTION, run_at: new Date(orphanRunAt).toISOString() });
    expect(await sys.store.create(orphan, "delay-user", body.toString("utf8"), "", orphanRunAt)).toBe(true);
    expect(await sys.tasks.sweepOutbox(0)).toBe(1);

    const ids = [...accepted.map((a) => a.task_id), orphan];
    for (const id of ids) {
      const v = await view(id);
      expect(v.status).toBe("scheduled");
      expect(v.run_at).toBeString();
      expect(await sys.redis.get(sys.store.keys.legacyStatus(id))).toBe("scheduled");
    }
    // Until its time, each stays scheduled: watched every 100 ms (the recorded start checks the rest).
    const firstDue = Math.min(...(await Promise.all(ids.map(async (id) => Date.parse((await view(id)).run_at!)))));
    while (Date.now() < firstDue - 300) {
      for (const id of ids) expect((await view(id)).status).toBe("scheduled");
      await Bun.sleep(100);
    }
    await waitFor(async () => (await Promise.all(ids.map(view))).every((v) => v.status === "done"), 30_000, "the delayed tasks to be done");
    const lateness: number[] = [];
    for (const id of ids) {
      const v = await view(id);
      const late = Date.parse(v.started_at!) - Date.parse(v.run_at!);
      lateness.push(late);
      expect(late).toBeGreaterThanOrEqual(0); // never early
      expect(v.attempts).toBe(1);
    }
    console.error(`[lifecycle-delay] started after run_at by ${lateness.join(", ")} ms`);
    // DELAY_TEST_LOG=debug: the worker's forwarding and run lines, to see where the time goes.
    if (process.env.DELAY_TEST_LOG) {
      for (const id of ids) console.error(id, (await view(id)).run_at, (await view(id)).started_at);
      console.error(worker.raw.filter((l) => ids.some((id) => l.includes(id))).join("\n"));
    }
    for (const late of lateness) expect(late).toBeLessThanOrEqual(MAX_LATE_MS);
    // Each has its result message, with status done.
    await waitFor(() => ids.every((id) => sys.results.for(id).length > 0), 30_000, "a result message per delayed task");
    for (const id of ids) expect(sys.results.for(id)[0]!.body.status).toBe("done");
  }, 60_000);

  test("run_at in the past, or delay_ms 0: queued, to run at once", async () => {
    // (RFC 3339 forms: a space for T, lower case z, a leap second.)
    for (const extra of [{ run_at: "2020-01-01T00:00:00Z" }, { run_at: "2016-12-31 23:59:60z" }, { run_at: "2016-12-31t23:59:60.5+01:00" }, { delay_ms: 0 }]) {
      const res = await post({ user_id: "delay-user", content: "now", ...extra });
      expect(res.status).toBe(202);
      const a = (await res.json()) as { task_id: string; status: string; run_at?: string };
      expect(a.status).toBe("queued");
      expect(a.run_at).toBeUndefined();
      await sys.waitStatus(a.task_id, "done", 30_000);
    }
  }, 60_000);

  test("past MAX_DELAY_SECONDS: 422 delay_too_long naming the field; both fields: 400; bad values: 422", async () => {
    const cases: [Record<string, unknown>, number, string, string][] = [
      [{ delay_ms: 10_001 }, 422, "delay_too_long", "delay_ms"],
      [{ run_at: new Date(Date.now() + 12_000).toISOString() }, 422, "delay_too_long", "run_at"],
      [{ delay_ms: 1_000, run_at: new Date().toISOString() }, 400, "conflicting_fields", "run_at"],
      [{ delay_ms: -1 }, 422, "invalid_body", "delay_ms"],
      [{ delay_ms: 1.5 }, 422, "invalid_body", "delay_ms"],
      [{ delay_ms: "1000" }, 422, "invalid_body", "delay_ms"],
      [{ run_at: "tomorrow" }, 422, "invalid_body", "run_at"],
      [{ run_at: "2030-02-30T00:00:00Z" }, 422, "invalid_body", "run_at"],
      [{ run_at: "2030-01-01T24:00:00Z" }, 422, "invalid_body", "run_at"],
      [{ run_at: 1_700_000_000 }, 422, "invalid_body", "run_at"],
    ];
    for (const [extra, status, error, field] of cases) {
      const res = await post({ user_id: "delay-user", content: "x", ...extra });
      const b = (await res.json()) as { error: string; message: string; field?: string };
      expect({ extra, status: res.status, error: b.error, field: b.field }).toEqual({ extra, status, error, field });
      if (error === "delay_too_long") expect(b.message).toContain("MAX_DELAY_SECONDS");
    }
    // The limit is as configured: exactly at it is accepted.
    const ok = await post({ user_id: "delay-user", content: "ten seconds", delay_ms: 10_000 });
    expect(ok.status).toBe(202);
    expect(((await ok.json()) as { status: string }).status).toBe("scheduled");
  });
});
