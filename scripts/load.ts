// Load generator: `bun scripts/load.ts --tasks 1000 --concurrency 32 [--mode http|mq] [--metrics URL,...] [--json]`.
// Sends tasks, follows them to their results, prints throughput and latency; exits 1 if a task is lost,
// GET /tasks/:id disagrees with a result or (--metrics) the fleet's counters disagree with the run's,
// 2 on bad options. See docs/performance.md and docs/observability.md.
import { loadConfig } from "../lib/config.ts";
import { parseLoadArgs, USAGE } from "./load/args.ts";
import { parseOrExit } from "./load/cli.ts";
import { CpuWindow, cpuRun, discoverProcesses, formatCpu } from "./load/cpu.ts";
import { runHttp } from "./load/http-mode.ts";
import { countsOf, formatCheck, MetricsProbe, ScrapeError } from "./load/metrics-check.ts";
import { runMq } from "./load/mq-mode.ts";
import { watchRss } from "./load/rss.ts";
import { formatSummary } from "./load/tracker.ts";

async function main() {
  const cfg = loadConfig();
  const o = parseOrExit(() => parseLoadArgs(process.argv.slice(2), { apiPort: cfg.API_PORT, queues: cfg.MQ_QUEUES }), USAGE, "stderr");
  // First scrape before anything is sent; a URL that does not answer is a bad option (nothing sent yet).
  const probe = o.metrics.length ? new MetricsProbe(o.metrics, cfg.METRICS_TOKEN, o.metricsWaitS * 1000) : undefined;
  try {
    await probe?.before();
  } catch (e) {
    if (!(e instanceof ScrapeError)) throw e;
    console.error(`--metrics: ${e.message}`);
    process.exit(2);
  }
  const rss = o.watchPids.length ? watchRss(o.watchPids) : undefined;
  cpuRun.window = new CpuWindow(discoverProcesses(cfg, { api: o.mode === "http" ? o.api : undefined, watchPids: o.watchPids }));
  const summary =
    o.mode === "mq"
      ? await runMq(cfg, o)
      : await runHttp(cfg, o, probe && ((t) => probe.after(countsOf(t))));
  const check = probe?.result;
  if (rss) summary.rss = rss.stop();
  const cpu = cpuRun.window.figures(summary.done + summary.failed);
  if (o.json) process.stdout.write(JSON.stringify({ ...summary, ...(check ? { metrics_check: check } : {}), cpu }) + "\n");
  else console.log(formatSummary(summary) + (check ? `\n${formatCheck(check)}` : "") + (cpu ? `\n${formatCpu(cpu)}` : ""));
  const bad = summary.lost > 0 || (summary.verify?.problems.length ?? 0) > 0 || (check !== undefined && !check.ok);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error("load failed:", e instanceof Error ? e.message : e);
  process.exit(1);
});
