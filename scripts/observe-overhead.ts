// `bun scripts/observe-overhead.ts [--tasks 3000] [--concurrency 32] [--warmup 500] [--rounds 3]
//        [--modes off,metrics,tracing,dashboard] [--agent-ms 0] [--worker-concurrency 64] [--paired] [--json]
//        [--cpu-prof DIR]`
// What metrics, tracing and the dashboard cost end to end (docs/observability.md, "Overhead"): the
// same load (scripts/load.ts, http mode, the demo agent) through a fresh API and worker with
//   off:         METRICS_ENABLED=false, no tracing, no ADMIN_TOKEN (workers still run their
//                lib/ops/recorder.ts, which is always on: it is part of `off`)
//   metrics:     metrics on in the API and the worker (WORKER_METRICS_PORT), both scraped every 5 s
//   tracing:     spans of every task exported over OTLP/HTTP to a light sink in this process
//                (scripts/load/span-sink.ts: counts spans, keeps none)
//   tracing:R:   the same with OTEL_TRACES_SAMPLER_ARG=R (a share R of the traces recorded)
//   dashboard:N: ADMIN_TOKEN set and N open pages (default 1), each polling /dashboard/data every 2 s
//                as the page's script does (after one GET /dashboard); metrics and tracing off
// `--rounds` times, every mode once per round; round r starts at mode r mod k (rotated), so no mode
// always runs first. Per mode: the median and the mean of done/s and of CPU ms per task (API +
// worker); the cost against `off` from the medians. Each run gets a namespace of its own (topics,
// group, key prefix), removed afterwards, on the servers named by the environment (REDIS_URL,
// MQ_ENDPOINT, MQ_NAMESRV: `source` the stack's env).
// --paired: each mode runs AT THE SAME TIME as an `off` system of its own (two APIs, two workers, two
// load.ts on the same box and servers), so whatever slows the box hits both sides of the pair alike;
// the cost is then the median over the pairs of each pair's own ratio (`paired_cost_pct`).
// --cpu-prof DIR: every API and worker writes a CPU profile (`bun --cpu-prof`, and its markdown
// summary) into DIR/<mode>-<round>-<api|worker>/ when it exits; `bun scripts/load/profile-summary.ts`
// sums its samples by package, and compares two.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config } from "../lib/config.ts";
import { cliOptions, wholeNumbers } from "./load/cli.ts";
import { freePort, namespace, start, stop, systemEnv, waitHttp } from "./load/processes.ts";
import { spanSink } from "./load/span-sink.ts";

const ROOT = join(import.meta.dir, "..");
const USAGE = `usage: bun scripts/observe-overhead.ts [--tasks 3000] [--concurrency 32] [--warmup 500] [--rounds 3]
         [--modes off,metrics,tracing,dashboard] [--agent-ms 0] [--worker-concurrency 64] [--paired] [--json] [--cpu-prof DIR]
modes: off, metrics, tracing, tracing:<ratio 0..1>, dashboard, dashboard:<open pages>`;

const a = cliOptions(
  {
    tasks: { type: "string", default: "3000" },
    concurrency: { type: "string", default: "32" },
    warmup: { type: "string", default: "500" },
    rounds: { type: "string", default: "3" },
    modes: { type: "string", default: "off,metrics,tracing,dashboard" },
    "agent-ms": { type: "string", default: "0" },
    "worker-concurrency": { type: "string", default: "64" },
    paired: { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    json: { type: "boolean", default: false },
  },
  USAGE,
);
const opt = wholeNumbers(
  { tasks: a.tasks, concurrency: a.concurrency, warmup: a.warmup, rounds: a.rounds, agentMs: a["agent-ms"], workerConcurrency: a["worker-concurrency"] },
  USAGE,
  { rounds: 1, workerConcurrency: 1 },
);

type Mode = string;
const modes = a.modes!.split(",").map((m) => m.trim()).filter(Boolean);
for (const m of modes)
  if (!/^(off|metrics|tracing(:(0(\.\d+)?|1(\.0*)?))?|dashboard(:[1-9]\d*)?)$/.test(m)) {
    console.error(`--modes: off, metrics, tracing, tracing:<ratio 0..1>, dashboard or dashboard:<pages>, got ${JSON.stringify(m)}`);
    process.exit(2);
  }
if (!modes.length || new Set(modes).size !== modes.length) {
  console.error(`--modes: one or more modes, each once, got ${JSON.stringify(a.modes)}`);
  process.exit(2);
}
const say = (s: string) => a.json || console.error(s);

/** Round r's order (r from 0): the modes rotated to start at r mod k. */
const orderOf = (r: number) => [...modes.slice(r % modes.length), ...modes.slice(0, r % modes.length)];

// ------------------------------------------------------------------------------------------ dashboard

/** The page's poll period (lib/http/dashboard-page.ts's script: setInterval(poll, 2000)). */
const POLL_MS = 2_000;

/**
 * `pages` open dashboards: each loads /dashboard once, then polls /dashboard/data every 2 s with the
 * admin token, reading every body (what a browser receives; its parsing and drawing are its own cost,
 * not the server's). The pages' starts are spread over one period, as pages opened at different times.
 */
function openPages(api: string, token: string, pages: number) {
  const stats = { pages, page_loads: 0, polls: 0, failed: 0, bytes: 0, first_error: undefined as string | undefined };
  const timeouts: ReturnType<typeof setTimeout>[] = [];
  const intervals: ReturnType<typeof setInterval>[] = [];
  let open = true;
  const get = async (path: string, accept: string) => {
    try {
      const r = await fetch(`${api}${path}`, { headers: { authorization: `Bearer ${token}`, accept } });
      const body = await r.text();
      stats.bytes += body.length;
      if (!r.ok && open) {
        stats.failed++;
        stats.first_error ??= `${path}: ${r.status} ${body.slice(0, 200)}`;
      }
      return r.ok;
    } catch (e) {
      if (open) {
        stats.failed++;
        stats.first_error ??= `${path}: ${e}`;
      }
      return false;
    }
  };
  for (let i = 0; i < pages; i++)
    timeouts.push(
      setTimeout(() => {
        void get("/dashboard", "text/html").then((ok) => ok && stats.page_loads++);
        intervals.push(
          setInterval(() => {
            stats.polls++;
            void get("/dashboard/data", "application/json");
          }, POLL_MS),
        );
      }, Math.round((i * POLL_MS) / pages)),
    );
  return {
    stats,
    close() {
      open = false;
      for (const t of timeouts) clearTimeout(t);
      for (const t of intervals) clearInterval(t);
    },
  };
}

// ------------------------------------------------------------------------------------------ one run

async function load(env: Record<string, string>, api: string, tasks: number, verify: number, watch: number[] = [], metricsUrls: string[] = []) {
  const args = ["scripts/load.ts", "--api", api, "--tasks", String(tasks), "--concurrency", String(opt.concurrency), "--verify", String(verify), "--json"];
  for (const pid of watch) args.push("--watch-pid", String(pid));
  if (metricsUrls.length) args.push("--metrics", metricsUrls.join(","));
  const p = Bun.spawn(["bun", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (!out.trim()) throw new Error(`load.ts failed (${code}): ${err.slice(-2000)}`);
  return JSON.parse(out.trim().split("\n").pop()!);
}

/** Bun's flags for a CPU profile of one process of a run (--cpu-prof DIR), written when it exits. */
const profiled = (mode: Mode, round: number, what: string) =>
  a["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${join(a["cpu-prof"], `${mode}-${round}-${what}`)}`] : [];

async function runOnce(cfg: Config, mode: Mode, round: number, sink: ReturnType<typeof spanSink>) {
  const ns = namespace(cfg, "obs", "observe-overhead");
  const metricsPort = freePort();
  const pages = mode.startsWith("dashboard") ? Number(mode.split(":")[1] ?? "1") : 0;
  const token = randomBytes(24).toString("hex");
  // What the API, the worker and load.ts share; the mode's own variables go to the API and worker only.
  const base = systemEnv(ns, opt);
  const env: Record<string, string> = {
    ...base,
    METRICS_ENABLED: mode === "metrics" ? "true" : "false",
    ...(mode === "metrics" ? { WORKER_METRICS_PORT: String(metricsPort) } : {}),
    ...(mode.startsWith("tracing") ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_TRACES_SAMPLER_ARG: mode.split(":")[1] ?? "1" } : {}),
    ...(pages ? { ADMIN_TOKEN: token } : {}),
  };
  const api = `http://127.0.0.1:${base.API_PORT}`;
  const procs: ChildProcess[] = [];
  let scraper: ReturnType<typeof setInterval> | undefined;
  let dashboard: ReturnType<typeof openPages> | undefined;
  const spansAtStart = sink.spans;
  try {
    await ns.provision();
    procs.push(
      start(["bun", ...profiled(mode, round, "worker"), "worker.ts"], ROOT, env, join(tmpdir(), `${ns.id}.worker.log`)),
      start(["bun", ...profiled(mode, round, "api"), "api.ts"], ROOT, env, join(tmpdir(), `${ns.id}.api.log`)),
    );
    await waitHttp(`${api}/readyz`, procs[1]!, "the API");
    if (mode === "metrics") {
      // A Prometheus server's scrapes, every 5 s, of both processes (the API's includes the consumer lag).
      const scrape = () => Promise.all([fetch(`${api}/metrics`), fetch(`http://127.0.0.1:${metricsPort}/metrics`)].map((p) => p.then((r) => r.text(), () => "")));
      scraper = setInterval(() => void scrape(), 5_000);
    }
    if (pages) dashboard = openPages(api, token, pages);
    if (opt.warmup) await load(base, api, opt.warmup, 0);
    const spansBefore = sink.spans;
    const worker = procs[0]!.pid!;
    // In `metrics` mode load.ts also checks that the counters' deltas equal its own counts (issue 11:
    // "after a load run, the metrics' counts equal load.ts's"): a mismatch fails the run.
    const metricsUrls = mode === "metrics" ? [`${api}/metrics`, `http://127.0.0.1:${metricsPort}/metrics`] : [];
    const s = await load(base, api, opt.tasks, 20, [worker], metricsUrls);
    if (s.metrics_check && !s.metrics_check.ok) throw new Error(`metrics disagree with load.ts: ${JSON.stringify(s.metrics_check)}`);
    const spansReceived = sink.spans - spansBefore;
    // CPU per task of the API and the worker (from /proc, scripts/load/cpu.ts): what the box's
    // other tenants change least, where throughput on a shared box moves with their load. Redis's and
    // the broker's are given beside (the dashboard's reads land there), not in `both`.
    const cpuOf = (name: string) => (s.cpu?.processes as { name: string; ms_per_task: number }[] | undefined)?.find((p) => p.name === name)?.ms_per_task;
    const apiMs = cpuOf("api");
    const workerMs = cpuOf(`watched ${worker}`);
    const loadAvg = Number(loadavg()[0]!.toFixed(2));
    // Stopped here (the finally below finds them stopped), so that the spans the exporters flush at
    // shutdown are in: at ratio 1, spans_total should be 5 x (warm-up + tasks) (submit, claim, agent
    // run, send, finish), none dropped.
    clearInterval(scraper);
    dashboard?.close();
    for (const p of procs) await stop(p);
    const spansTotal = sink.spans - spansAtStart;
    return {
      mode,
      round,
      done_per_s: s.done_per_s as number,
      submit_per_s: s.submit_per_s as number,
      e2e_p50_ms: s.e2e_ms.p50 as number,
      e2e_p99_ms: s.e2e_ms.p99 as number,
      // The measured window (first submit to last result): the dashboard costs per second, not per
      // task, so a window of a few seconds holds only one or two polls per page.
      window_s: s.cpu?.window_s as number | undefined,
      cpu_ms_per_task: {
        api: apiMs,
        worker: workerMs,
        both: apiMs !== undefined && workerMs !== undefined ? Number((apiMs + workerMs).toFixed(3)) : undefined,
        redis: cpuOf("redis"),
        broker: cpuOf("rocketmq proxy+broker"),
        box: s.cpu?.box?.ms_per_task as number | undefined,
      },
      worker_rss_peak_mib: s.rss?.[String(worker)]?.peak_mib as number | undefined,
      done: s.done as number,
      lost: s.lost as number,
      load_avg_1m: loadAvg,
      ...(mode.startsWith("tracing") ? { spans_received: spansReceived, spans_total: spansTotal } : {}),
      ...(dashboard ? { dashboard: { ...dashboard.stats } } : {}),
      ...(s.metrics_check ? { metrics_check: { ok: s.metrics_check.ok as boolean, rows: (s.metrics_check.rows as { metric: string; load: number; metrics: number }[]).map((r) => `${r.metric} ${r.load}=${r.metrics}`) } } : {}),
    };
  } finally {
    clearInterval(scraper);
    dashboard?.close();
    for (const p of procs) await stop(p);
    await ns.remove();
  }
}

// ------------------------------------------------------------------------------------------ main

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x));
  return s.length ? s.reduce((t, x) => t + x, 0) / s.length : NaN;
};
const fixed = (x: number, d: number) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

async function main() {
  const cfg = loadConfig();
  const sink = spanSink();
  type Row = Awaited<ReturnType<typeof runOnce>>;
  const rows: Row[] = [];
  const order: string[][] = [];
  /** --paired: [off row, mode row] run side by side */
  const pairs: [Row, Row][] = [];
  try {
    for (let r = 0; r < opt.rounds && a.paired; r++) {
      order.push(orderOf(r).filter((m) => m !== "off"));
      for (const mode of orderOf(r).filter((m) => m !== "off")) {
        say(`round ${r + 1}: off beside ${mode} ...`);
        const pair = await Promise.all([runOnce(cfg, "off", r + 1, sink), runOnce(cfg, mode, r + 1, sink)]);
        rows.push(...pair);
        pairs.push(pair);
        say(`  ${JSON.stringify(pair)}`);
      }
    }
    for (let r = 0; r < opt.rounds && !a.paired; r++) {
      order.push(orderOf(r));
      for (const mode of orderOf(r)) {
        say(`round ${r + 1}: ${mode} ...`);
        const row = await runOnce(cfg, mode, r + 1, sink);
        rows.push(row);
        say(`  ${JSON.stringify(row)}`);
        if (row.dashboard?.failed) say(`  dashboard: ${row.dashboard.failed} requests failed, first: ${row.dashboard.first_error}`);
      }
    }
  } finally {
    sink.stop();
  }
  if (sink.problems.length) console.error(`span sink: ${sink.problems.join("; ")}`);

  const of = (m: Mode, f: (r: Row) => number) => rows.filter((x) => x.mode === m).map(f);
  const done = (r: Row) => r.done_per_s;
  const cpu = (r: Row) => r.cpu_ms_per_task.both ?? NaN;
  const per = (f: (m: Mode) => number | null) => Object.fromEntries(modes.map((m) => [m, f(m)]));
  const vsOff = (f: (m: Mode) => number) => Object.fromEntries(modes.filter((m) => m !== "off").map((m) => [m, fixed(f(m), 1)]));
  const medDone = (m: Mode) => median(of(m, done));
  const medCpu = (m: Mode) => median(of(m, cpu));
  const meanDone = (m: Mode) => mean(of(m, done));
  const meanCpu = (m: Mode) => mean(of(m, cpu));
  const summary = {
    tasks: opt.tasks,
    concurrency: opt.concurrency,
    rounds: opt.rounds,
    warmup: opt.warmup,
    agent_ms: opt.agentMs,
    worker_concurrency: opt.workerConcurrency,
    modes,
    /** the modes' order in each round */
    order,
    span_sink: "scripts/load/span-sink.ts (counts spans, keeps none)",
    runs: rows,
    median_done_per_s: per((m) => fixed(medDone(m), 1)),
    mean_done_per_s: per((m) => fixed(meanDone(m), 1)),
    median_cpu_ms_per_task: per((m) => fixed(medCpu(m), 3)),
    mean_cpu_ms_per_task: per((m) => fixed(meanCpu(m), 3)),
    // Throughput lost, and CPU per task (API + worker) added, against `off`: from the medians
    // (one disturbed run moves a mean, not a median of 3+), and from the means beside them.
    cost_pct: vsOff((m) => (1 - medDone(m) / medDone("off")) * 100),
    cpu_cost_pct: vsOff((m) => (medCpu(m) / medCpu("off") - 1) * 100),
    mean_cost_pct: vsOff((m) => (1 - meanDone(m) / meanDone("off")) * 100),
    mean_cpu_cost_pct: vsOff((m) => (meanCpu(m) / meanCpu("off") - 1) * 100),
    // --paired: per mode, the median over its pairs of (1 - mode/off) for done/s and (mode/off - 1) for CPU.
    ...(a.paired
      ? {
          paired: true,
          paired_cost_pct: vsOff((m) => median(pairs.filter(([, x]) => x.mode === m).map(([o, x]) => (1 - done(x) / done(o)) * 100))),
          paired_cpu_cost_pct: vsOff((m) => median(pairs.filter(([, x]) => x.mode === m).map(([o, x]) => (cpu(x) / cpu(o) - 1) * 100))),
        }
      : {}),
    ...(sink.problems.length ? { span_sink_problems: sink.problems } : {}),
  };
  if (a.json) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(JSON.stringify(summary, null, 2));
    console.log(`\n${table(summary)}`);
  }
  process.exit(rows.some((r) => r.lost > 0) ? 1 : 0);
}

/** A Markdown table of the summary: one line per mode. */
function table(s: {
  median_done_per_s: Record<string, number | null>;
  mean_done_per_s: Record<string, number | null>;
  median_cpu_ms_per_task: Record<string, number | null>;
  mean_cpu_ms_per_task: Record<string, number | null>;
  cost_pct: Record<string, number | null>;
  cpu_cost_pct: Record<string, number | null>;
  mean_cost_pct: Record<string, number | null>;
  mean_cpu_cost_pct: Record<string, number | null>;
}): string {
  const f = (x: number | null | undefined) => (x === null || x === undefined ? "-" : String(x));
  const pct = (x: number | null | undefined) => (x === null || x === undefined ? "" : `${x > 0 ? "+" : ""}${x} %`);
  return [
    `${opt.rounds} round(s), ${opt.tasks} tasks, ${opt.concurrency} in flight, agent ${opt.agentMs} ms, worker concurrency ${opt.workerConcurrency}`,
    "| mode | done/s median | mean | CPU ms/task (API + worker) median | mean | vs off, medians: throughput / CPU | means |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ...modes.map((m) =>
      [
        m,
        f(s.median_done_per_s[m]),
        f(s.mean_done_per_s[m]),
        f(s.median_cpu_ms_per_task[m]),
        f(s.mean_cpu_ms_per_task[m]),
        m === "off" ? "" : `${pct(s.cost_pct[m] === null ? null : -s.cost_pct[m]!)} / ${pct(s.cpu_cost_pct[m])}`,
        m === "off" ? "" : `${pct(s.mean_cost_pct[m] === null ? null : -s.mean_cost_pct[m]!)} / ${pct(s.mean_cpu_cost_pct[m])}`,
      ].join(" | ").replace(/^/, "| ").concat(" |"),
    ),
  ].join("\n");
}

main().catch((e) => {
  console.error("observe-overhead failed:", e);
  process.exit(1);
});
