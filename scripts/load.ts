// Load generator: `bun scripts/load.ts --tasks 1000 --concurrency 32 [--mode http|mq] [--json]`.
// Sends tasks, follows them to their results, prints throughput and latency; exits 1 if a task is lost
// or GET /tasks/:id disagrees with a result, 2 on bad options. See docs/performance.md.
import { loadConfig } from "../lib/config.ts";
import { ArgsError, parseLoadArgs, USAGE } from "./load/args.ts";
import { CpuWindow, cpuRun, discoverProcesses, formatCpu } from "./load/cpu.ts";
import { runHttp } from "./load/http-mode.ts";
import { runMq } from "./load/mq-mode.ts";
import { watchRss } from "./load/rss.ts";
import { formatSummary } from "./load/tracker.ts";

async function main() {
  const cfg = loadConfig();
  let o;
  try {
    o = parseLoadArgs(process.argv.slice(2), { apiPort: cfg.API_PORT, queues: cfg.MQ_QUEUES });
  } catch (e) {
    if (!(e instanceof ArgsError)) throw e;
    console.error(e.message ? `${e.message}\n${USAGE}` : USAGE);
    process.exit(e.message ? 2 : 0);
  }
  const rss = o.watchPids.length ? watchRss(o.watchPids) : undefined;
  cpuRun.window = new CpuWindow(discoverProcesses(cfg, { api: o.mode === "http" ? o.api : undefined, watchPids: o.watchPids }));
  const summary = o.mode === "mq" ? await runMq(cfg, o) : await runHttp(cfg, o);
  if (rss) summary.rss = rss.stop();
  const cpu = cpuRun.window.figures(summary.done + summary.failed);
  if (o.json) process.stdout.write(JSON.stringify({ ...summary, cpu }) + "\n");
  else console.log(formatSummary(summary) + (cpu ? `\n${formatCpu(cpu)}` : ""));
  const bad = summary.lost > 0 || (summary.verify?.problems.length ?? 0) > 0;
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error("load failed:", e instanceof Error ? e.message : e);
  process.exit(1);
});
