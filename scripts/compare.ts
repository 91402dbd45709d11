// `bun scripts/compare.ts [--tasks 5000] [--concurrency 32] [--agent-ms 0] [--worker-concurrency 64]
//                         [--warmup 2000] [--rounds 1] [--json]`
// Runs our system and the BullMQ peer (../shared/peers/bullmq, copied into the cache at run time, never
// into this repository) back to back on this box, with the same load, and prints both and the ratio.
// Each side gets fresh API and worker processes, a warm-up run, then the measured run; CPU per task
// comes from /proc (scripts/load/cpu.ts). Ours runs in a namespace of its own (topics, group, key
// prefix), removed afterwards, on the servers named by the environment (REDIS_URL, MQ_ENDPOINT,
// MQ_NAMESRV); the peer uses the same Redis. docs/performance.md.
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config } from "../lib/config.ts";
import { CpuWindow, pidListeningOn, type CpuFigures } from "./load/cpu.ts";
import { cliOptions, usageError, wholeNumbers } from "./load/cli.ts";
import { deleteKeys, freePort, namespace, start, stop, systemEnv, waitHttp } from "./load/processes.ts";

const ROOT = join(import.meta.dir, "..");
// ../shared beside the checkout (a git worktree sits one level deeper); PEER_BULLMQ_DIR wins.
const PEER_SRC =
  process.env.PEER_BULLMQ_DIR ??
  [join(ROOT, "..", "shared"), join(ROOT, "..", "..", "shared")].map((d) => join(d, "peers", "bullmq")).find((d) => existsSync(d)) ??
  join(ROOT, "..", "shared", "peers", "bullmq");
const CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "agent-prod");

const USAGE = `usage: bun scripts/compare.ts [--tasks 5000] [--concurrency 32] [--agent-ms 0] [--worker-concurrency 64]
                             [--warmup 2000] [--rounds 1] [--only ours|bullmq] [--json]`;
const a = cliOptions(
  {
    tasks: { type: "string", default: "5000" },
    concurrency: { type: "string", default: "32" },
    "agent-ms": { type: "string", default: "0" },
    "worker-concurrency": { type: "string", default: "64" },
    warmup: { type: "string", default: "2000" },
    rounds: { type: "string", default: "1" },
    only: { type: "string" },
    json: { type: "boolean", default: false },
  },
  USAGE,
);
// `peer` is the older spelling of `bullmq`, still accepted.
if (a.only !== undefined && !["ours", "bullmq", "peer"].includes(a.only)) usageError(`--only: ours or bullmq, got ${JSON.stringify(a.only)}`, USAGE);
const opt = wholeNumbers(
  { tasks: a.tasks, concurrency: a.concurrency, agentMs: a["agent-ms"], workerConcurrency: a["worker-concurrency"], warmup: a.warmup, rounds: a.rounds },
  USAGE,
);

interface Side {
  system: "ours" | "bullmq";
  done_per_s: number;
  submit_per_s: number;
  submit_ms: { p50: number; p99: number };
  e2e_ms: { p50: number; p99: number; max: number };
  lost: number;
  load_avg: [number, number];
  cpu_ms_per_task: Record<string, number>;
  rss_peak_mib: Record<string, number | undefined>;
}

/** One side's row from its load.ts summary and CPU figures; `names` renames processes (pid -> role). */
function side(system: Side["system"], s: any, cpu: CpuFigures, workerPeakMib: number | undefined, names: Record<string, string> = {}): Side {
  return {
    system,
    done_per_s: s.done_per_s,
    submit_per_s: s.submit_per_s,
    submit_ms: s.submit_ms,
    e2e_ms: s.e2e_ms,
    lost: s.lost,
    load_avg: cpu.load_avg,
    cpu_ms_per_task: {
      ...Object.fromEntries(cpu.processes.map((p) => [names[p.name] ?? p.name, p.ms_per_task])),
      "all but the load generator": round(cpu.processes.filter((p) => p.name !== "load generator").reduce((t, p) => t + p.ms_per_task, 0)),
      box: cpu.box.ms_per_task,
    },
    rss_peak_mib: { worker: workerPeakMib },
  };
}

const say = (s: string) => a.json || console.error(s);

/** Runs a command to its end; returns stdout (and, with `cpu`, sets cpu.ms to the command's CPU time). */
async function run(cmd: string[], cwd: string, env: Record<string, string>, onSpawn?: () => void, cpu?: { ms: number }) {
  const p = Bun.spawn(cmd, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  onSpawn?.();
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0 && !out.trim()) throw new Error(`${cmd.join(" ")} failed (${code}): ${err.slice(-2000)}`);
  const u = p.resourceUsage()?.cpuTime;
  if (cpu && u) cpu.ms = Number(u.user + u.system) / 1000;
  return out;
}

const lastJson = (out: string) => JSON.parse(out.trim().split("\n").pop()!);

// ------------------------------------------------------------------------------------------ ours

async function ours(cfg: Config, logs: string): Promise<Side> {
  const ns = namespace(cfg, "cmp", "compare");
  const id = ns.id;
  const env = systemEnv(ns, opt);
  const api = `http://127.0.0.1:${env.API_PORT}`;
  const procs: ChildProcess[] = [];
  try {
    await ns.provision();
    const worker = start(["bun", "worker.ts"], ROOT, env, join(logs, `${id}.worker.log`));
    procs.push(worker, start(["bun", "api.ts"], ROOT, env, join(logs, `${id}.api.log`)));
    await waitHttp(`${api}/readyz`, procs[1]!, "our API");
    const load = ["bun", "scripts/load.ts", "--api", api, "--concurrency", String(opt.concurrency), "--json"];
    if (opt.warmup) await run([...load, "--tasks", String(opt.warmup), "--verify", "0"], ROOT, env);
    const s = lastJson(await run([...load, "--tasks", String(opt.tasks), "--watch-pid", String(worker.pid)], ROOT, env));
    const cpu = s.cpu as CpuFigures;
    const names: Record<string, string> = { [`watched ${worker.pid}`]: "worker" };
    return side("ours", s, cpu, s.rss?.[String(worker.pid)]?.peak_mib, names);
  } finally {
    for (const p of procs) await stop(p);
    await ns.remove();
  }
}

// ------------------------------------------------------------------------------------------ peer

/** Copies the peer into the cache (again when its files changed) and installs its locked packages. */
async function preparePeer(): Promise<string> {
  if (!existsSync(join(PEER_SRC, "package.json"))) throw new Error(`BullMQ peer not found at ${PEER_SRC} (PEER_BULLMQ_DIR)`);
  const files = ["package.json", "bun.lock", "api.ts", "worker.ts", "load.ts"];
  const hash = createHash("sha256");
  for (const f of files) hash.update(readFileSync(join(PEER_SRC, f)));
  const digest = hash.digest("hex").slice(0, 16);
  const dir = join(CACHE, "peer-bullmq");
  const stamp = join(dir, ".installed");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === digest) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of files) cpSync(join(PEER_SRC, f), join(dir, f));
  await run(["bun", "install", "--frozen-lockfile"], dir, {});
  writeFileSync(stamp, digest);
  return dir;
}

function redisPort(cfg: Config): number {
  if (!cfg.REDIS_URL) return cfg.REDIS_PORT;
  const u = new URL(cfg.REDIS_URL);
  if (u.password || u.username) throw new Error("the BullMQ peer connects without a password: use a Redis without one");
  return Number(u.port || 6379);
}

async function peer(cfg: Config, logs: string): Promise<Side> {
  const dir = await preparePeer();
  const id = `cmp${randomBytes(3).toString("hex")}`;
  const rport = redisPort(cfg);
  const env: Record<string, string> = {
    REDIS_PORT: String(rport),
    QUEUE: id,
    RESULT_STREAM: `${id}Res`,
    AGENT_DELAY_MS: String(opt.agentMs),
    WORKER_CONCURRENCY: String(opt.workerConcurrency),
    API_PORT: String(freePort()),
  };
  const api = `http://127.0.0.1:${env.API_PORT}`;
  const procs: ChildProcess[] = [];
  try {
    const worker = start(["bun", "worker.ts"], dir, env, join(logs, `${id}.peer-worker.log`));
    const apiProc = start(["bun", "api.ts"], dir, env, join(logs, `${id}.peer-api.log`));
    procs.push(worker, apiProc);
    await waitHttp(`${api}/healthz`, apiProc, "the peer's API");
    const load = ["bun", "load.ts", "--api", api, "--concurrency", String(opt.concurrency)];
    if (opt.warmup) await run([...load, "--tasks", String(opt.warmup)], dir, env);
    const watched = [
      { name: "api", pid: apiProc.pid! },
      { name: "worker", pid: worker.pid! },
      { name: "redis", pid: pidListeningOn(rport) ?? -1 },
    ].filter((p) => p.pid > 0);
    const window = new CpuWindow(watched);
    const rss = peakRss([worker.pid!]);
    const loadCpu = { ms: 0 };
    // The peer's load generator reports no CPU: we measure from its start to its end (its own start-up
    // and up to 0.5 s of waiting after the last result included: a slight disadvantage to the peer).
    const s = lastJson(await run([...load, "--tasks", String(opt.tasks)], dir, env, () => window.begin(), loadCpu));
    window.end();
    const peaks = rss.stop();
    const cpu = window.figures(s.done)!;
    cpu.processes.push({ name: "load generator", pid: 0, cpu_ms: loadCpu.ms, ms_per_task: round(loadCpu.ms / Math.max(1, s.done)) });
    return side("bullmq", s, cpu, peaks[worker.pid!]);
  } finally {
    for (const p of procs) await stop(p);
    await deleteKeys(cfg, "compare", [`bull:${id}:*`], [`${id}Res`]);
  }
}

function peakRss(pids: number[]) {
  const peaks: Record<number, number> = {};
  const t = setInterval(() => {
    for (const pid of pids) {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSafe(`/proc/${pid}/status`));
      if (m) peaks[pid] = Math.max(peaks[pid] ?? 0, Math.round(Number(m[1]!) / 102.4) / 10);
    }
  }, 200);
  return { stop: () => (clearInterval(t), peaks) };
}

const readFileSafe = (f: string) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};

const round = (x: number) => Math.round(x * 1000) / 1000;

// ------------------------------------------------------------------------------------------ main

function table(rows: Side[]): string {
  const roles = [...new Set(rows.flatMap((r) => Object.keys(r.cpu_ms_per_task)))];
  const col = (r: Side) => r.system;
  const line = (label: string, f: (r: Side) => string) => `| ${label} | ${rows.map(f).join(" | ")} |`;
  const fx = (x: number | undefined, d = 1) => (x === undefined ? "-" : x.toFixed(d));
  return [
    `| | ${rows.map(col).join(" | ")} |`,
    `| --- | ${rows.map(() => "---:").join(" | ")} |`,
    line("tasks/s end to end", (r) => fx(r.done_per_s, 0)),
    line("submit/s", (r) => fx(r.submit_per_s, 0)),
    line("submit p50 / p99 ms", (r) => `${fx(r.submit_ms.p50)} / ${fx(r.submit_ms.p99)}`),
    line("e2e p50 / p99 / max ms", (r) => `${fx(r.e2e_ms.p50)} / ${fx(r.e2e_ms.p99)} / ${fx(r.e2e_ms.max, 0)}`),
    line("lost", (r) => String(r.lost)),
    line("load avg (1 min) start -> end", (r) => `${r.load_avg[0]} -> ${r.load_avg[1]}`),
    line("worker RSS peak MiB", (r) => fx(r.rss_peak_mib.worker)),
    ...roles.map((role) => line(`CPU ms/task: ${role}`, (r) => fx(r.cpu_ms_per_task[role], 3))),
  ].join("\n");
}

async function main() {
  const cfg = loadConfig();
  const logs = join(CACHE, "compare-logs");
  mkdirSync(logs, { recursive: true });
  const results: Side[] = [];
  for (let i = 0; i < opt.rounds; i++) {
    if (a.only !== "bullmq" && a.only !== "peer") {
      say(`compare: ours, ${opt.tasks} tasks, ${opt.concurrency} in flight, agent ${opt.agentMs} ms (round ${i + 1})...`);
      results.push(await ours(cfg, logs));
    }
    if (a.only !== "ours") {
      say(`compare: BullMQ peer, same load (round ${i + 1})...`);
      results.push(await peer(cfg, logs));
    }
  }
  const mean = (s: Side["system"]) => {
    const r = results.filter((x) => x.system === s);
    return r.length ? r.reduce((t, x) => t + x.done_per_s, 0) / r.length : NaN;
  };
  const ratio = round(mean("ours") / mean("bullmq"));
  if (a.json) process.stdout.write(JSON.stringify({ options: opt, results, ratio }) + "\n");
  else {
    console.log(table(results));
    console.log(`\nratio ours / BullMQ, tasks/s end to end: ${Number.isFinite(ratio) ? ratio.toFixed(2) : "-"} (logs in ${logs})`);
  }
  process.exit(results.some((r) => r.lost > 0) ? 1 : 0);
}

main().catch((e) => {
  console.error("compare failed:", e);
  process.exit(1);
});
