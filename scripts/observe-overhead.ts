// `bun scripts/observe-overhead.ts [--tasks 3000] [--concurrency 32] [--warmup 500] [--rounds 2]
//                                  [--modes off,metrics,tracing,tracing:0.1] [--json]`
// What metrics and tracing cost end to end (docs/observability.md, "Overhead"): the same load
// (scripts/load.ts, http mode, the demo agent with 0 ms) through a fresh API and worker with
//   off:     METRICS_ENABLED=false, no tracing
//   metrics: metrics on in the API and the worker (WORKER_METRICS_PORT), both scraped every 5 s
//   tracing: spans of every task exported over OTLP/HTTP to a receiver in this process
//   tracing:R: the same with OTEL_TRACES_SAMPLER_ARG=R (a share R of the traces recorded)
// in turn, `--rounds` times (interleaved, so a change of the box's load hits all three alike). Each
// configuration runs in a namespace of its own (topics, group, key prefix), removed afterwards, on the
// servers named by the environment (REDIS_URL, MQ_ENDPOINT, MQ_NAMESRV: `source` the stack's env).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "redis";
import { loadConfig, mqCredentials, parseConfig } from "../lib/config.ts";
import { deprovision, provision, specFromConfig } from "../lib/provision.ts";
import { Admin } from "../lib/rocketmq/admin.ts";
import { otlpReceiver } from "../tests/support/otlp-receiver.ts";

const ROOT = join(import.meta.dir, "..");
const { values: a } = parseArgs({
  options: {
    tasks: { type: "string", default: "3000" },
    concurrency: { type: "string", default: "32" },
    warmup: { type: "string", default: "500" },
    rounds: { type: "string", default: "2" },
    modes: { type: "string", default: "off,metrics,tracing" },
    json: { type: "boolean", default: false },
  },
});
const opt = { tasks: Number(a.tasks), concurrency: Number(a.concurrency), warmup: Number(a.warmup), rounds: Number(a.rounds) };
for (const [k, v] of Object.entries(opt))
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k}: a whole number >= 0 expected`);
    process.exit(2);
  }

type Mode = string;
const modes = a.modes!.split(",").map((m) => m.trim()).filter(Boolean);
for (const m of modes)
  if (!/^(off|metrics|tracing(:(0(\.\d+)?|1))?)$/.test(m)) {
    console.error(`--modes: off, metrics, tracing or tracing:<ratio 0..1>, got ${JSON.stringify(m)}`);
    process.exit(2);
  }
const say = (s: string) => a.json || console.error(s);
const freePort = () => {
  const s = Bun.serve({ port: 0, fetch: () => new Response() });
  const p = s.port!;
  s.stop(true);
  return p;
};

function start(entry: string, env: Record<string, string>, log: string): ChildProcess {
  const fd = openSync(log, "w");
  return spawn("bun", [entry], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd] });
}

async function stop(p: ChildProcess) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(t);
}

async function waitHttp(url: string, p: ChildProcess) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (p.exitCode !== null) throw new Error(`exited (${p.exitCode}) before ${url} answered`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await Bun.sleep(200);
  }
  throw new Error(`${url} did not answer within 60 s`);
}

async function load(env: Record<string, string>, api: string, tasks: number, verify: number, watch: number[] = []) {
  const args = ["scripts/load.ts", "--api", api, "--tasks", String(tasks), "--concurrency", String(opt.concurrency), "--verify", String(verify), "--json"];
  for (const pid of watch) args.push("--watch-pid", String(pid));
  const p = Bun.spawn(["bun", ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (!out.trim()) throw new Error(`load.ts failed (${code}): ${err.slice(-2000)}`);
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function runOnce(mode: Mode, receiver: ReturnType<typeof otlpReceiver>) {
  const cfg = loadConfig();
  const id = `obs${randomBytes(3).toString("hex")}`;
  const metricsPort = freePort();
  const env: Record<string, string> = {
    MQ_TOPIC_REQUEST: `${id}_req`, MQ_TOPIC_RESULT: `${id}_res`, MQ_GROUP_AGENT: `${id}_grp`, REDIS_PREFIX: `${id}:`,
    AGENT_DELAY_MS: "0", API_HOST: "127.0.0.1", API_PORT: String(freePort()), LOG_FORMAT: "json",
    METRICS_ENABLED: mode === "metrics" ? "true" : "false",
    ...(mode === "metrics" ? { WORKER_METRICS_PORT: String(metricsPort) } : {}),
    ...(mode.startsWith("tracing") ? { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER_ARG: mode.split(":")[1] ?? "1" } : {}),
  };
  const nsCfg = parseConfig({ ...process.env, ...env });
  const admin = new Admin({ namesrv: cfg.MQ_NAMESRV, cluster: cfg.MQ_CLUSTER, timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS, credentials: mqCredentials(cfg) });
  const spec = specFromConfig(nsCfg, { queues: cfg.MQ_QUEUES });
  const api = `http://127.0.0.1:${env.API_PORT}`;
  const procs: ChildProcess[] = [];
  let scraper: ReturnType<typeof setInterval> | undefined;
  try {
    await provision(admin, spec);
    procs.push(start("worker.ts", env, join(tmpdir(), `${id}.worker.log`)), start("api.ts", env, join(tmpdir(), `${id}.api.log`)));
    await waitHttp(`${api}/readyz`, procs[1]!);
    if (mode === "metrics") {
      // A Prometheus server's scrapes, every 5 s, of both processes (the API's includes the consumer lag).
      const scrape = () => Promise.all([fetch(`${api}/metrics`), fetch(`http://127.0.0.1:${metricsPort}/metrics`)].map((p) => p.then((r) => r.text(), () => "")));
      scraper = setInterval(() => void scrape(), 5_000);
    }
    if (opt.warmup) await load(env, api, opt.warmup, 0);
    const spansBefore = receiver.spans.length;
    const worker = procs[0]!.pid!;
    const s = await load(env, api, opt.tasks, 20, [worker]);
    // CPU per task of the API and the worker (from /proc, scripts/load/cpu.ts): what the box's
    // other tenants change least, where throughput on a shared box moves with their load.
    const cpuOf = (name: string) => (s.cpu?.processes as { name: string; ms_per_task: number }[] | undefined)?.find((p) => p.name === name)?.ms_per_task;
    const apiMs = cpuOf("api");
    const workerMs = cpuOf(`watched ${worker}`);
    return {
      mode, done_per_s: s.done_per_s, submit_per_s: s.submit_per_s, e2e_p50_ms: s.e2e_ms.p50, e2e_p99_ms: s.e2e_ms.p99,
      cpu_ms_per_task: { api: apiMs, worker: workerMs, both: apiMs !== undefined && workerMs !== undefined ? Number((apiMs + workerMs).toFixed(3)) : undefined },
      worker_rss_peak_mib: s.rss?.[String(worker)]?.peak_mib,
      done: s.done, lost: s.lost, load_avg_1m: Number(loadavg()[0]!.toFixed(2)),
      ...(mode.startsWith("tracing") ? { spans_received: receiver.spans.length - spansBefore } : {}),
    };
  } finally {
    clearInterval(scraper);
    for (const p of procs) await stop(p);
    await deprovision(admin, spec).catch((e) => console.error(`could not remove ${id}'s topics: ${e}`));
    admin.close();
    const redis = createClient({ url: cfg.REDIS_URL ?? `redis://${cfg.REDIS_HOST}:${cfg.REDIS_PORT}` });
    await redis.connect();
    for (const pattern of [`${id}:*`, `{${id}:*`])
      for await (const keys of redis.scanIterator({ MATCH: pattern, COUNT: 1000 })) if (keys.length) await redis.unlink(keys);
    await redis.quit();
  }
}

const receiver = otlpReceiver();
const rows: Awaited<ReturnType<typeof runOnce>>[] = [];
for (let r = 1; r <= opt.rounds; r++)
  for (const mode of modes) {
    say(`round ${r}: ${mode} ...`);
    const row = await runOnce(mode, receiver);
    rows.push(row);
    say(`  ${JSON.stringify(row)}`);
  }
receiver.stop();
// The receiver kept every span in memory: drop them before printing.
receiver.spans.length = 0;
const mean = (m: Mode, f: (r: (typeof rows)[number]) => number = (r) => r.done_per_s) => {
  const xs = rows.filter((x) => x.mode === m).map(f);
  return xs.reduce((s, x) => s + x, 0) / xs.length;
};
const cpu = (r: (typeof rows)[number]) => r.cpu_ms_per_task.both ?? NaN;
const summary = {
  tasks: opt.tasks, concurrency: opt.concurrency, rounds: opt.rounds, runs: rows,
  mean_done_per_s: Object.fromEntries(modes.map((m) => [m, mean(m)])),
  mean_cpu_ms_per_task: Object.fromEntries(modes.map((m) => [m, Number(mean(m, cpu).toFixed(3))])),
  // Throughput lost, and CPU per task added, against `off`.
  cost_pct: Object.fromEntries(modes.filter((m) => m !== "off").map((m) => [m, Number(((1 - mean(m) / mean("off")) * 100).toFixed(1))])),
  cpu_cost_pct: Object.fromEntries(modes.filter((m) => m !== "off").map((m) => [m, Number(((mean(m, cpu) / mean("off", cpu) - 1) * 100).toFixed(1))])),
};
if (a.json) console.log(JSON.stringify(summary));
else console.log(JSON.stringify(summary, null, 2));
process.exit(0);
