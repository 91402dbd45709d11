// The run history the recording agent (lib/agent/test-agents.ts, AGENT=record) leaves in its folder,
// read back and checked: which runs of one task overlapped in time. Shared by scripts/chaos.ts and
// the fault tests (tests/faults/*).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RunEvent } from "../../lib/agent/test-agents.ts";

export type { RunEvent };

export interface Run {
  task: string;
  run: string;
  pid: number;
  attempt: number;
  content: string;
  start: number;
  /** when it ended: its end event, else its process's death, else Infinity (still running) */
  end: number;
  outcome: "ok" | "error" | "aborted" | "killed" | "open";
}

/** Every event of every process, in file order per process. Lines cut short by a crash are skipped. */
export function readEvents(dir: string): RunEvent[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
  } catch {
    return [];
  }
  const out: RunEvent[] = [];
  for (const f of files)
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as RunEvent);
      } catch {
        /* a partial last line */
      }
    }
  return out;
}

/**
 * Runs per task. `deaths` maps a worker pid to when it died (killed or exited): a run without an end
 * event ends there (a kill event of the agent itself counts as the death too).
 */
export function runsByTask(events: RunEvent[], deaths: Map<number, number> = new Map()): Map<string, Run[]> {
  const runs = new Map<string, Run>();
  for (const e of events) {
    if (e.ev === "start")
      runs.set(e.run, { task: e.task, run: e.run, pid: e.pid, attempt: e.attempt, content: e.content ?? "", start: e.at, end: Infinity, outcome: "open" });
  }
  for (const e of events) {
    const r = runs.get(e.run);
    if (!r) continue;
    if (e.ev === "end") {
      r.end = e.at;
      r.outcome = e.outcome ?? "ok";
    } else if (e.ev === "kill" && r.outcome === "open") {
      r.end = e.at;
      r.outcome = "killed";
    }
  }
  for (const r of runs.values()) {
    if (r.outcome !== "open") continue;
    const died = deaths.get(r.pid);
    if (died !== undefined) {
      r.end = Math.max(r.start, died);
      r.outcome = "killed";
    }
  }
  const byTask = new Map<string, Run[]>();
  for (const r of runs.values()) {
    let list = byTask.get(r.task);
    if (!list) byTask.set(r.task, (list = []));
    list.push(r);
  }
  for (const list of byTask.values()) list.sort((a, b) => a.start - b.start);
  return byTask;
}

/** The most runs of one task at the same instant (an end and a start in the same ms do not overlap). */
export function maxConcurrent(runs: Run[]): number {
  const points: [number, number][] = [];
  for (const r of runs) points.push([r.start, 1], [r.end, -1]);
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of points) max = Math.max(max, (now += d));
  return max;
}

export interface Overlap {
  task: string;
  concurrent: number;
  runs: Run[];
}

/** Tasks whose runs overlapped, and the most concurrent runs seen for any task. */
export function overlaps(byTask: Map<string, Run[]>): { max: number; tasks: Overlap[] } {
  let max = 0;
  const tasks: Overlap[] = [];
  for (const [task, runs] of byTask) {
    const c = maxConcurrent(runs);
    max = Math.max(max, c);
    if (c > 1) tasks.push({ task, concurrent: c, runs });
  }
  return { max, tasks };
}

export function describeRun(r: Run, t0 = 0): string {
  const at = (ms: number) => (Number.isFinite(ms) ? `${((ms - t0) / 1000).toFixed(2)}s` : "never");
  return `run ${r.run.slice(0, 8)} pid ${r.pid} attempt ${r.attempt}: ${at(r.start)} -> ${at(r.end)} (${r.outcome})`;
}
