// The operator CLI (scripts/tasks.ts) against a real stack, run as an operator runs it: a child
// process with the services' environment. A task that failed for good is retried to done; a task
// whose message RocketMQ dead-lettered is replayed to done from the dead-letters list, and not run
// again by a later replay once its record expired; inspect and stats show them; latencies above the
// last histogram bucket read as "> 600 s"; bad arguments and an unreachable Redis give their exit
// codes, never a stack trace.
// The group allows one delivery (MQ_RETRY_MAX_TIMES=0), so a message taken and never acked is
// dead-lettered on its next delivery (as in tests/dead-letter.test.ts).
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fragment } from "../lib/http/dashboard-page.ts";
import { keys } from "../lib/keys.ts";
import { BUCKETS_MS, epochMinute, field, percentiles, quantile } from "../lib/ops/minutes.ts";
import type { Overview } from "../lib/ops/overview.ts";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { takeAndDrop } from "./support/stuck-worker.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const ROOT = join(import.meta.dir, "..");
let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem({ env: { MQ_RETRY_MAX_TIMES: "0" } });
}, 60_000);
afterEach(async () => {
  expect(await stopAll()).toBe(0);
});
afterAll(() => sys?.close(), 60_000);

async function cli(args: string[], env: Record<string, string> = sys.ns.env) {
  const p = Bun.spawn(["bun", join(ROOT, "scripts/tasks.ts"), ...args], { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}
const json = async (args: string[]) => {
  const r = await cli([...args, "--json"]);
  return { ...r, doc: JSON.parse(r.stdout) };
};


test("usage, bad arguments and an unreachable Redis: exit codes 0, 2, 3 and no stack trace", async () => {
  const help = await cli(["--help"]);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain("usage: bun scripts/tasks.ts inspect");
  for (const args of [[], ["frobnicate"], ["inspect"], ["inspect", "not-a-uuid"], ["stats", "--limit", "3"], ["dead-letters", "--limit", "0"], ["stats", "--nope"]]) {
    const r = await cli(args);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.stderr).toContain("usage:");
    expect(r.stderr).not.toContain("    at ");
  }
  const down = await cli(["stats"], { ...sys.ns.env, REDIS_URL: "redis://127.0.0.1:1" });
  expect(down.code).toBe(3);
  expect(down.stderr).toContain("Redis is not reachable");
  expect(down.stderr).not.toContain("    at ");
}, 60_000);

test("retry: a failed task runs again to done; a done task is not retried (exit 1); a dead letter is replayed to done", async () => {
  const { ns } = sys;
  // A task that fails for good: the recording agent fails on #fail, and one attempt is allowed.
  const failing = new Service("worker.ts", {
    ...ns.env, AGENT: "record", AGENT_RECORD_DIR: mkdtempSync(join(tmpdir(), "ops-cli-")), AGENT_DELAY_MS: "0", MAX_ATTEMPTS: "1",
  });
  const { task_id: failed } = await sys.tasks.submit({ user_id: "ops", content: "broken for now #fail" });
  await sys.waitStatus(failed, "failed", 60_000);
  expect(await failing.stop()).toBe(0);

  // A task whose message is dead-lettered: its first delivery taken and dropped, no worker running.
  const { task_id: dead } = await sys.tasks.submit({ user_id: "ops", content: "dead-lettered" });
  await takeAndDrop(sys.ns, dead);

  // The fixed fleet: the demo agent, which succeeds. It reads the dead-letter topic and fails `dead`.
  const w = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0" });
  await sys.waitStatus(dead, "failed", 60_000);

  const insp = await json(["inspect", failed]);
  expect(insp.code).toBe(0);
  expect(insp.doc).toMatchObject({ task_id: failed, status: "failed", attempts: 1, user_id: "ops" });
  expect(insp.doc.error).toContain("#fail asked for a failure");
  expect(insp.doc.message_bytes).toBeGreaterThan(0); // kept, so it can be sent again

  const retried = await json(["retry", failed]);
  expect(retried.code, retried.stderr).toBe(0);
  expect(retried.doc).toMatchObject({ ok: true, task_id: failed, published: true });
  await sys.waitStatus(failed, "done", 60_000);
  expect((await json(["inspect", failed])).doc).toMatchObject({ status: "done", attempts: 1, requeued: 1 });

  const again = await cli(["retry", failed]);
  expect(again.code).toBe(1);
  expect(again.stdout).toContain("it is done: only a failed task can be retried");
  const unknown = await cli(["inspect", crypto.randomUUID()]);
  expect(unknown.code).toBe(1);

  const listed = await json(["dead-letters"]);
  expect(listed.code).toBe(0);
  expect(listed.doc).toContainEqual(expect.objectContaining({ task_id: dead, status: "failed" }));
  const replay = await json(["dead-letters", "--replay"]);
  expect(replay.code, replay.stdout + replay.stderr).toBe(0);
  expect(replay.doc.replayed).toBe(1);
  await sys.waitStatus(dead, "done", 60_000);
  expect((await cli(["dead-letters", "--replay"])).code).toBe(1); // nothing left to replay

  // Results: a failure, then a success, for each task (downstream sees the retry as a second result).
  await waitFor(() => sys.results.for(dead).some((r) => r.body.status === "done") && sys.results.for(failed).some((r) => r.body.status === "done"), 30_000, "the retried tasks' results");

  // stats: exact counts by status (a scan), the worker's counters, the live worker.
  await waitFor(async () => (await json(["stats"])).doc.hour.done >= 2, 30_000, "the worker's per-minute counters");
  const stats = await json(["stats"]);
  expect(stats.code).toBe(0);
  expect(stats.doc.statuses).toMatchObject({ complete: true, counts: { done: 2 } });
  expect(stats.doc.workers).toHaveLength(1);
  expect(stats.doc.workers[0]).toMatchObject({ pid: w.proc.pid, in_flight: 0, capacity: 64 });
  expect(typeof stats.doc.backlog).toBe("number"); // read from the broker (its exact value depends on pop offsets)
  expect(stats.doc.dead_letters).toBeGreaterThanOrEqual(1);
  const human = await cli(["stats"]);
  expect(human.stdout).toContain("live workers: 1");

  // A day later the replayed task's record expires (TASK_TTL_SECONDS) while its dead letter stays
  // (DEAD_LETTER_TTL_SECONDS, renewed by each new entry): a later replay, for new letters, must not
  // record it anew and run it a second time (a second result downstream, the LLM paid twice).
  const doneResults = (id: string) => sys.results.for(id).filter((r) => r.body.status === "done").length;
  expect(doneResults(dead)).toBe(1);
  const { keys: k } = sys.store;
  await sys.store.redis.del([k.task(dead), k.legacyStatus(dead), k.events(dead)]);
  const late = await json(["dead-letters", "--replay"]);
  expect(late.code, late.stdout + late.stderr).toBe(1);
  expect(late.doc).toMatchObject({ replayed: 0, already_replayed: 1 });
  expect(late.doc.answers).toContainEqual(expect.objectContaining({ task_id: dead, ok: false, reason: "already_replayed" }));
  const lateHuman = await cli(["dead-letters", "--replay"]);
  expect(lateHuman.code).toBe(1);
  expect(lateHuman.stdout).toContain(`${dead}  skipped: already replayed (re-queued at `);
  expect(lateHuman.stdout).toContain("1 already replayed");
  expect(await sys.store.get(dead)).toBeNull(); // not recorded anew
  // A task whose record was lost before it was ever replayed is still recorded anew from its entry's
  // body, unless the entry is older than DEAD_LETTER_TTL_SECONDS (a marker would be gone by then).
  const body = JSON.parse(listed.doc.find((e: { task_id?: string }) => e.task_id === dead).body) as Record<string, unknown>;
  const [lost, old] = [crypto.randomUUID(), crypto.randomUUID()];
  const entry = (id: string, at: number) => ({ reason: "test: lost record", task_id: id, body: JSON.stringify({ ...body, task_id: id }), at: new Date(at).toISOString() });
  await sys.store.deadLetter(entry(old, Date.now() - 8 * 86_400_000));
  await sys.store.deadLetter(entry(lost, Date.now()));
  const mixed = await json(["dead-letters", "--replay"]);
  expect(mixed.code, mixed.stdout + mixed.stderr).toBe(0);
  expect(mixed.doc).toMatchObject({ replayed: 1, already_replayed: 1 });
  expect(mixed.doc.answers).toContainEqual(expect.objectContaining({ task_id: lost, ok: true }));
  expect(mixed.doc.answers).toContainEqual(expect.objectContaining({ task_id: old, ok: false, reason: "too_old" }));
  expect(await sys.store.get(old)).toBeNull();
  await sys.waitStatus(lost, "done", 60_000);
  await waitFor(() => doneResults(lost) === 1, 30_000, "the lost task's result");
  expect(doneResults(dead)).toBe(1); // no second run of the expired one
  expect(await w.stop()).toBe(0);
  // A clean stop withdraws the announcement at once.
  expect((await json(["stats"])).doc.workers).toHaveLength(0);
}, 240_000);

test("human output shows a client's control characters as \\u escapes (no ESC or OSC reaches the terminal); stats lists every status", async () => {
  // A user id, an error and a dead-letter reason as a hostile client could shape them: retitle the
  // terminal (OSC 0), clear it (CSI 2J), a C1 CSI, a fake link (OSC 8), a bidi override.
  const evil = "mallory\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e";
  const { task_id } = await sys.tasks.submit({ user_id: evil, content: "control characters" });
  await sys.store.redis.hSet(sys.store.keys.task(task_id), "error", "boom\u001b]8;;http://evil.example\u0007click\u001b]8;;\u0007\r\nfake line");
  await sys.store.deadLetter({ reason: `poison\u001b[1A\u001b[2K${evil}`, body: "not json", at: new Date().toISOString() });
  // One scheduled task, so stats has a status the old human output left out.
  await sys.tasks.submit({ user_id: "ops-later", content: "later" }, undefined, { runAt: Date.now() + 3_600_000 });

  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/; // every control character but the newline between lines
  const inspect = await cli(["inspect", task_id]);
  expect(inspect.code, inspect.stderr).toBe(0);
  expect(inspect.stdout).not.toMatch(raw);
  expect(inspect.stdout).toContain("user_id   mallory\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u202e");
  expect(inspect.stdout).toContain("error     boom\\u001b]8;;http://evil.example\\u0007click\\u001b]8;;\\u0007\\u000d\\u000afake line");
  expect(inspect.stdout).not.toContain("\nfake line"); // no line of its own

  const dead = await cli(["dead-letters"]);
  expect(dead.code, dead.stderr).toBe(0);
  expect(dead.stdout).not.toMatch(raw);
  expect(dead.stdout).toContain("poison\\u001b[1A\\u001b[2Kmallory\\u001b]0;pwned");
  // --json is JSON's own escaping, unchanged: the value parses back to what the client sent.
  const doc = JSON.parse((await cli(["inspect", task_id, "--json"])).stdout) as { user_id: string };
  expect(doc.user_id).toBe(evil);

  const human = await cli(["stats"]);
  const json = JSON.parse((await cli(["stats", "--json"])).stdout) as { statuses: { counts: Record<string, number> } };
  expect(json.statuses.counts.scheduled).toBeGreaterThanOrEqual(1);
  for (const status of ["queued", "scheduled", "running", "done", "failed", "canceled"])
    expect(human.stdout, status).toMatch(new RegExp(`^  ${status} +${json.statuses.counts[status] ?? 0}$`, "m"));
}, 60_000);

test("latencies above the last histogram bucket (600 s) read as more than 600 s, not <= 600 s: quantile, stats, the dashboard", async () => {
  const n = BUCKETS_MS.length; // the overflow bucket's index
  const counts = new Array<number>(n + 1).fill(0);
  counts[2] = 90; // <= 250 ms
  counts[n] = 10; // > 600 s
  expect(quantile(counts, 0.5)).toBe(250);
  expect(quantile(counts, 0.95)).toBe(Infinity);
  expect(quantile(counts, 0.99)).toBe(Infinity);
  expect(quantile(new Array<number>(n + 1).fill(0), 0.5)).toBeNull();
  const bounded = new Array<number>(n + 1).fill(0);
  bounded[n - 1] = 1; // in the last bounded bucket: <= 600 s, a true upper bound
  expect(quantile(bounded, 0.99)).toBe(600_000);
  expect(percentiles(bounded)).toEqual({ p50: 600_000, p95: 600_000, p99: 600_000 });
  expect(percentiles(counts)).toEqual({ p50: 250, p95: 600_000, p99: 600_000, over: ["p95", "p99"] });

  // stats, on a prefix of its own holding only this minute's buckets
  const prefix = `${sys.ns.redisPrefix}latency:`;
  const env = { ...sys.ns.env, REDIS_PREFIX: prefix };
  const minute = keys(prefix).minute(epochMinute());
  await sys.store.redis.hSet(minute, { done: "100", [field.bucket("e2e", 2)]: "90", [field.bucket("e2e", n)]: "10" });
  try {
    const human = await cli(["stats"], env);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain("end to end p50 <= 250 ms, p95 > 600 s, p99 > 600 s");
    const doc = JSON.parse((await cli(["stats", "--json"], env)).stdout) as { hour: { e2e: unknown } };
    expect(doc.hour.e2e).toEqual({ p50: 250, p95: 600_000, p99: 600_000, over: ["p95", "p99"] });
  } finally {
    await sys.store.redis.del(minute);
  }

  // the dashboard's line over the hour
  const e2e = percentiles(counts);
  const html = fragment({
    at: new Date().toISOString(),
    counts: { running: 0, backlog: 0, done_last_hour: 100, failed_last_hour: 0, retried_last_hour: 0 },
    hour: { minutes: [], done: 100, failed: 0, retry: 0, e2e, run: e2e },
    workers: [], failures: [], dead_letters: [],
  } satisfies Overview);
  expect(html).toContain("p50 ≤250 ms, p95 &gt; 600 s, p99 &gt; 600 s");
  expect(html).not.toContain("≤600 s");
}, 60_000);
