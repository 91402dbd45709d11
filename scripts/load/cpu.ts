// CPU time per task: utime+stime (/proc/<pid>/stat, children not counted) of each process that serves
// a run, and of the whole box (/proc/stat), between the start of submitting and the last result.
// Unlike wall-clock throughput on a shared 2-core box, this barely moves with what else runs there.
//
// Processes are found by their listening port (/proc/net/tcp{,6} -> socket inode -> /proc/<pid>/fd):
// the API (--api), Redis (REDIS_URL/REDIS_PORT), the RocketMQ proxy+broker JVM (MQ_ENDPOINT) and the
// name server (MQ_NAMESRV); workers have no port, pass them with --watch-pid (BULLMQ peers likewise).
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { loadavg } from "node:os";
import type { Config } from "../../lib/config.ts";

const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux we run on (getconf CLK_TCK)

export interface CpuProcess {
  name: string;
  pid: number;
}

export interface CpuFigures {
  /** tasks the per-task figures divide by (results received) */
  tasks: number;
  window_s: number;
  /** 1-minute load average at the start and end of the window */
  load_avg: [number, number];
  /** all CPUs of the box: busy time (everything but idle and iowait) */
  box: { cpu_ms: number; ms_per_task: number; busy_pct: number; cpus: number };
  processes: { name: string; pid: number; cpu_ms: number; ms_per_task: number }[];
  /** sum over the processes above, the load generator included */
  watched_ms_per_task: number;
}

function procTicks(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start after the last ')'; utime, stime are 14, 15.
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

function boxTicks(): { busy: number; total: number; cpus: number } {
  const lines = readFileSync("/proc/stat", "utf8").split("\n");
  const v = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3]! + v[4]!;
  return { busy: total - idle, total, cpus: lines.filter((l) => /^cpu\d/.test(l)).length };
}

function listeningInodes(port: number): Set<string> {
  const out = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10 || c[3] !== "0A") continue; // 0A = LISTEN
      if (parseInt(c[1]!.split(":")[1]!, 16) === port) out.add(c[9]!);
    }
  }
  return out;
}

/** The process listening on a TCP port, if this user can see its file descriptors. */
export function pidListeningOn(port: number): number | undefined {
  const inodes = listeningInodes(port);
  if (!inodes.size) return undefined;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${d}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${d}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return Number(d);
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

const portOf = (hostPort: string) => Number(hostPort.split(";")[0]!.trim().split(":").pop());

/** The processes of a run: found by port, plus the pids given (named "watched <pid>"), plus ourselves. */
export function discoverProcesses(cfg: Config, opts: { api?: string; watchPids: number[] }): CpuProcess[] {
  const redisPort = cfg.REDIS_URL ? Number(new URL(cfg.REDIS_URL).port || 6379) : cfg.REDIS_PORT;
  const byPort: [string, number | undefined][] = [
    ["api", opts.api ? Number(new URL(opts.api).port || 80) : undefined],
    ["redis", redisPort],
    ["rocketmq proxy+broker", portOf(cfg.MQ_ENDPOINT)],
    ["rocketmq namesrv", portOf(cfg.MQ_NAMESRV)],
  ];
  const out: CpuProcess[] = [];
  const seen = new Set<number>();
  const add = (name: string, pid: number | undefined) => {
    if (pid === undefined || seen.has(pid)) return;
    seen.add(pid);
    out.push({ name, pid });
  };
  for (const [name, port] of byPort) if (port) add(name, pidListeningOn(port));
  for (const pid of opts.watchPids) add(`watched ${pid}`, pid);
  add("load generator", process.pid);
  return out;
}

/** Snapshots at begin() and end(); figures(tasks) divides the difference. */
export class CpuWindow {
  #start?: { at: number; box: ReturnType<typeof boxTicks>; procs: Map<number, number>; load: number };
  #end?: { at: number; box: ReturnType<typeof boxTicks>; procs: Map<number, number>; load: number };

  constructor(readonly processes: CpuProcess[]) {}

  #snap() {
    const procs = new Map<number, number>();
    for (const p of this.processes) {
      const t = procTicks(p.pid);
      if (t !== undefined) procs.set(p.pid, t);
    }
    return { at: performance.now(), box: boxTicks(), procs, load: loadavg()[0]! };
  }

  begin() {
    this.#start = this.#snap();
    this.#end = undefined;
  }

  end() {
    if (this.#start && !this.#end) this.#end = this.#snap();
  }

  figures(tasks: number): CpuFigures | undefined {
    const a = this.#start;
    const b = this.#end;
    if (!a || !b) return undefined;
    const per = (ms: number) => (tasks > 0 ? round(ms / tasks, 4) : 0);
    const boxMs = ((b.box.busy - a.box.busy) * 1000) / TICKS_PER_S;
    const processes = this.processes
      .filter((p) => a.procs.has(p.pid) && b.procs.has(p.pid))
      .map((p) => {
        const ms = ((b.procs.get(p.pid)! - a.procs.get(p.pid)!) * 1000) / TICKS_PER_S;
        return { name: p.name, pid: p.pid, cpu_ms: ms, ms_per_task: per(ms) };
      });
    const windowS = (b.at - a.at) / 1000;
    return {
      tasks,
      window_s: round(windowS, 3),
      load_avg: [round(a.load, 2), round(b.load, 2)],
      box: {
        cpu_ms: boxMs,
        ms_per_task: per(boxMs),
        busy_pct: round((100 * (b.box.busy - a.box.busy)) / Math.max(1, b.box.total - a.box.total), 1),
        cpus: b.box.cpus,
      },
      processes,
      watched_ms_per_task: per(processes.reduce((s, p) => s + p.cpu_ms, 0)),
    };
  }
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

/** The run's window, set by scripts/load.ts; the driver marks its start and end (scripts/load/driver.ts). */
export const cpuRun: { window?: CpuWindow } = {};

export function formatCpu(c: CpuFigures): string {
  const rows = c.processes.map((p) => `  ${p.name.padEnd(24)} ${p.ms_per_task.toFixed(3).padStart(8)} ms/task  (${p.cpu_ms} ms, pid ${p.pid})`);
  return [
    `CPU per task (${c.tasks} tasks, ${c.window_s} s, load avg ${c.load_avg[0]} -> ${c.load_avg[1]}):`,
    ...rows,
    `  ${"watched, total".padEnd(24)} ${c.watched_ms_per_task.toFixed(3).padStart(8)} ms/task`,
    `  ${`box (${c.box.cpus} CPUs)`.padEnd(24)} ${c.box.ms_per_task.toFixed(3).padStart(8)} ms/task  (busy ${c.box.busy_pct} %)`,
  ].join("\n");
}
