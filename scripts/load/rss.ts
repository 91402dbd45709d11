// Samples the resident set size (VmRSS in /proc/<pid>/status, Linux) of other processes during a run,
// e.g. the worker's: `--watch-pid $(pgrep -f worker.ts)`.
import { readFileSync } from "node:fs";

export interface RssFigures {
  /** MiB at the first sample, the largest, and the last */
  start_mib: number;
  peak_mib: number;
  end_mib: number;
  samples: number;
}

function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function watchRss(pids: number[], everyMs = 200) {
  const figs = new Map<number, RssFigures>();
  const sample = () => {
    for (const pid of pids) {
      const kib = rssKiB(pid);
      if (kib === undefined) continue;
      const mib = Math.round(kib / 102.4) / 10;
      const f = figs.get(pid);
      if (!f) figs.set(pid, { start_mib: mib, peak_mib: mib, end_mib: mib, samples: 1 });
      else {
        f.peak_mib = Math.max(f.peak_mib, mib);
        f.end_mib = mib;
        f.samples++;
      }
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    /** stops sampling; pid -> figures (a pid never readable is left out) */
    stop(): Record<string, RssFigures> {
      clearInterval(timer);
      sample();
      return Object.fromEntries([...figs].map(([pid, f]) => [String(pid), f]));
    },
  };
}
