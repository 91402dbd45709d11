// Issue 11, "after a load run, the metrics' counts equal load.ts's", checked the way a user checks it:
// `bun scripts/load.ts --metrics <api>,<worker>,... --json` as a subprocess against an api.ts and two
// worker.ts (each its own WORKER_METRICS_PORT, METRICS_TOKEN on all three). load.ts scrapes before
// its first POST and after its last result and compares the deltas with its own counts. Then the
// check must catch a mismatch (the workers left out: their finished tasks uncounted), count refused
// POSTs right, and refuse bad --metrics options before sending anything.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { MetricsProbe } from "../scripts/load/metrics-check.ts";
import { parsePromText, sumOf } from "../scripts/load/prom-text.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";

const ROOT = join(import.meta.dir, "..");
const N = 300;
const TOKEN = "scrape-secret-for-load-tests";

let ns: TestNamespace;
let env: Record<string, string>;
let apiMetrics: string;
let workerMetrics: string[];
/** a second API (no worker scraped with it) for a run beside another */
let api2: string;

beforeAll(async () => {
  ns = await createNamespace();
  const apiPort = freePort();
  env = { ...ns.env, API_PORT: String(apiPort), API_HOST: "127.0.0.1", AGENT_DELAY_MS: "0", METRICS_TOKEN: TOKEN };
  apiMetrics = `http://127.0.0.1:${apiPort}/metrics`;
  const ports = [freePort(), freePort()];
  workerMetrics = ports.map((p) => `http://127.0.0.1:${p}/metrics`);
  const api = new Service("api.ts", env);
  const api2Port = freePort();
  api2 = `http://127.0.0.1:${api2Port}`;
  const second = new Service("api.ts", { ...env, API_PORT: String(api2Port) });
  const workers = ports.map((p) => new Service("worker.ts", { ...env, WORKER_METRICS_PORT: String(p) }));
  await api.waitForLog("api listening");
  await second.waitForLog("api listening");
  for (const w of workers) {
    await w.waitForLog("worker metrics listening");
    await w.waitForLog("worker running");
  }
}, 60_000);

afterAll(async () => {
  await stopAll();
  await ns?.cleanup();
}, 60_000);

async function load(args: string[], extraEnv: Record<string, string> = {}) {
  const proc = Bun.spawn(["bun", join(ROOT, "scripts", "load.ts"), ...args], {
    cwd: ROOT,
    env: { ...env, ...extraEnv },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

async function loadJson(args: string[]) {
  const r = await load([...args, "--json"]);
  const lines = r.stdout.trim().split("\n");
  expect(lines.length, `stdout must hold one JSON line; stderr:\n${r.stderr}`).toBe(1);
  return { ...r, summary: JSON.parse(lines[0]!) as Record<string, any> };
}

type Row = { metric: string; load: number; metrics: number; ok: boolean; by_url: Record<string, number> };
const row = (s: Record<string, any>, metric: string): Row => {
  const r = (s.metrics_check.rows as Row[]).find((x) => x.metric === metric);
  expect(r, metric).toBeDefined();
  return r!;
};
const DONE = 'agent_tasks_finished_total{status="done"}';
const FAILED = 'agent_tasks_finished_total{status="failed"}';

describe("scripts/load.ts --metrics", () => {
  test("the Prometheus text reader: labels with escapes, special values, timestamps, comments", () => {
    const text = [
      "# HELP agent_tasks_finished_total tasks finished",
      "# TYPE agent_tasks_finished_total counter",
      'agent_tasks_finished_total{status="done"} 7',
      'agent_tasks_finished_total{status="failed",x="a \\"quoted\\" } brace, comma"} 2 1764550000000',
      "agent_tasks_accepted_total 12",
      'agent_task_run_seconds_bucket{le="+Inf",outcome="ok"} +Inf',
      "",
    ].join("\n");
    const s = parsePromText(text);
    expect(s).toHaveLength(4);
    expect(s[1]!.labels).toEqual({ status: "failed", x: 'a "quoted" } brace, comma' });
    expect(s[3]!.value).toBe(Infinity);
    expect(sumOf(s, "agent_tasks_finished_total")).toBe(9);
    expect(sumOf(s, "agent_tasks_finished_total", { status: "done" })).toBe(7);
    expect(sumOf(s, "agent_tasks_rejected_total")).toBe(0);
    expect(() => parsePromText("this is not { prometheus")).toThrow();
  });

  test("the counts are re-read until they agree (a worker counts just after publishing), or until the deadline", async () => {
    // An endpoint whose finished counter moves only on later scrapes, as a worker's may: the loop's
    // own logic, in process. The real processes are the tests below.
    const values = [0, 1, 1, 3]; // the first scrape is the before-scrape
    let scrapes = 0;
    let auth = "";
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req) {
        auth = req.headers.get("authorization") ?? "";
        const v = values[Math.min(scrapes++, values.length - 1)];
        return new Response(`# TYPE agent_tasks_finished_total counter\nagent_tasks_finished_total{status="done"} ${v}\n`);
      },
    });
    try {
      const url = `http://127.0.0.1:${server.port}/metrics`;
      const counts = { submitted: 0, accepted: 0, rejected: 0, done: 3, failed: 0 };
      const probe = new MetricsProbe([url], "tok", 5_000);
      await probe.before();
      const ok = await probe.after(counts);
      expect(auth).toBe("Bearer tok");
      expect(scrapes).toBe(4);
      expect(ok.ok).toBe(true);
      expect(ok.rows.find((r) => r.metric.includes("done"))).toMatchObject({ load: 3, metrics: 3, ok: true });
      // Never agreeing: a mismatch once the deadline passed, not before.
      scrapes = 0;
      const late = new MetricsProbe([url], undefined, 600);
      await late.before();
      const bad = await late.after({ ...counts, done: 4 });
      expect(bad.ok).toBe(false);
      expect(bad.waited_ms).toBeGreaterThanOrEqual(600);
      // A counter that went down: its process restarted during the run.
      values.splice(0, values.length, 5, 2);
      scrapes = 0;
      const restarted = new MetricsProbe([url], undefined, 0);
      await restarted.before();
      expect((await restarted.after({ ...counts, done: 0 })).problems.join()).toContain("went down");
    } finally {
      server.stop(true);
    }
  });

  test("bad --metrics options exit 2, naming the option, before anything is sent", async () => {
    const url = `http://127.0.0.1:${freePort()}/metrics`; // nobody listens there
    const cases: [string[], string, Record<string, string>?][] = [
      [["--metrics", "not a url"], "--metrics must be"],
      [["--metrics", `${apiMetrics},${apiMetrics}`], "twice"],
      [["--mode", "mq", "--metrics", apiMetrics], "http mode only"],
      [["--metrics", url], `--metrics: GET ${url}`],
      [["--metrics", apiMetrics], "401", { METRICS_TOKEN: "not-the-token" }],
    ];
    const runs = await Promise.all(cases.map(([args, , extra]) => load([...args, "--tasks", "5"], extra)));
    runs.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(cases[i]![1]);
      expect(r.stderr).not.toContain(TOKEN);
    });
    // Nothing was sent: the API counted no POST.
    const res = await fetch(apiMetrics, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(sumOf(parsePromText(await res.text()), "agent_tasks_submitted_total")).toBe(0);
  }, 30_000);

  test(`${N} tasks through the API and two workers: every count on /metrics equals load.ts's`, async () => {
    const { summary: s, code, stderr } = await loadJson([
      "--tasks", String(N), "--concurrency", "16", "--timeout", "60", "--metrics", [apiMetrics, ...workerMetrics].join(","),
    ]);
    expect(code, stderr).toBe(0);
    expect(s.done).toBe(N);
    expect(s.lost).toBe(0);
    expect(s.metrics_check.ok).toBe(true);
    expect(s.metrics_check.problems).toEqual([]);
    expect(s.metrics_check.urls).toEqual([apiMetrics, ...workerMetrics]);
    for (const r of s.metrics_check.rows as Row[]) expect(r.metrics, r.metric).toBe(r.load);
    expect(row(s, "agent_tasks_submitted_total").metrics).toBe(N);
    expect(row(s, "agent_tasks_accepted_total").metrics).toBe(N);
    expect(row(s, "agent_tasks_rejected_total (all reasons)").metrics).toBe(0);
    expect(row(s, DONE).metrics).toBe(N);
    expect(row(s, FAILED).metrics).toBe(0);
    // The API finishes nothing and the workers take no POST: each URL counts its own part.
    const done = row(s, DONE).by_url;
    expect(done[apiMetrics]).toBe(0);
    expect(done[workerMetrics[0]!]! + done[workerMetrics[1]!]!).toBe(N);
    for (const w of workerMetrics) expect(row(s, "agent_tasks_submitted_total").by_url[w]).toBe(0);
  }, 90_000);

  // Two runs at once, each against its own API process, so neither's counters see the other's POSTs:
  // a mismatch caught on the first API, refusals counted right on the second.
  test("a mismatch is caught (the workers left out: exit 1); refusals (content over MAX_CONTENT_BYTES) agree on a second API", async () => {
    const n = 30;
    const [mismatch, refused] = await Promise.all([
      loadJson(["--tasks", String(n), "--concurrency", "8", "--timeout", "60", "--metrics", apiMetrics, "--metrics-wait", "2"]),
      loadJson(["--api", api2, "--tasks", String(n), "--concurrency", "8", "--content-bytes", "40000", "--metrics", `${api2}/metrics`]),
    ]);
    let s = mismatch.summary;
    expect(mismatch.code, mismatch.stderr).toBe(1);
    expect(s.done).toBe(n);
    expect(s.lost).toBe(0);
    expect(s.metrics_check.ok).toBe(false);
    expect(row(s, "agent_tasks_submitted_total")).toMatchObject({ load: n, metrics: n, ok: true });
    expect(row(s, "agent_tasks_accepted_total")).toMatchObject({ load: n, metrics: n, ok: true });
    expect(row(s, DONE)).toMatchObject({ load: n, metrics: 0, ok: false });
    expect(s.metrics_check.problems.join("\n")).toContain("give every worker's /metrics URL");

    // Every POST refused: the API counts a refusal after answering it (its reason read from the body).
    s = refused.summary;
    expect(refused.code, refused.stderr).toBe(0);
    expect(s.accepted).toBe(0);
    expect(s.metrics_check.ok).toBe(true);
    expect(row(s, "agent_tasks_submitted_total")).toMatchObject({ load: n, metrics: n, ok: true });
    expect(row(s, "agent_tasks_accepted_total")).toMatchObject({ load: 0, metrics: 0, ok: true });
    expect(row(s, "agent_tasks_rejected_total (all reasons)")).toMatchObject({ load: n, metrics: n, ok: true });
  }, 60_000);
});
