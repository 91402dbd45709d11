// Periodic full garbage collection for a worker. With hundreds of tasks in flight the live heap stays
// ~20 MiB, but the runtime lets ~100 MiB of garbage pile up before it collects on its own: collecting
// every WORKER_GC_INTERVAL_MS keeps a busy worker's peak RSS near 150 MiB instead of ~200
// (docs/performance.md). A full collection is not free: 25-55 ms of CPU, and the event loop stalls
// as long (measured under load, docs/performance.md). So it runs only while the RSS is above
// WORKER_GC_MIN_RSS_MIB; a worker with little garbage is left to the runtime.
import { memoryUsage } from "node:process";

export function startPeriodicGc(intervalMs: number, minRssMib: number): () => void {
  if (intervalMs <= 0) return () => {};
  const min = minRssMib * 1024 * 1024;
  const timer = setInterval(() => {
    if (memoryUsage.rss() >= min) Bun.gc(true);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
