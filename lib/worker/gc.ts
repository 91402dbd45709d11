// Forced full garbage collection for a worker, only when its RSS nears the limit we aim for.
// With hundreds of tasks in flight the live heap stays ~20 MiB, but the runtime lets ~100 MiB of
// garbage pile up before it collects on its own (docs/performance.md): a busy worker then peaks near
// 200 MiB. A forced collection brings it back, but it is expensive: 25-120 ms of CPU each, with the
// event loop stopped as long; every 2 s unconditionally it was 44 % of a busy worker's CPU samples
// (bun --cpu-prof, docs/performance.md). So the RSS is looked at often (cheap) and a collection runs
// only when it is at least WORKER_GC_MIN_RSS_MIB, at most once per WORKER_GC_INTERVAL_MS.
import { memoryUsage } from "node:process";

const CHECK_EVERY_MS = 250;

export function startPeriodicGc(minIntervalMs: number, minRssMib: number): () => void {
  if (minIntervalMs <= 0) return () => {};
  const min = minRssMib * 1024 * 1024;
  let last = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    if (now - last < minIntervalMs || memoryUsage.rss() < min) return;
    last = now;
    Bun.gc(true);
  }, Math.min(CHECK_EVERY_MS, minIntervalMs));
  timer.unref();
  return () => clearInterval(timer);
}
