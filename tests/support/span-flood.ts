// Run by tests/tracing-warnings.test.ts in a process of its own (tracing's state is process-wide):
// tracing towards a closed port, metrics on, 3,000 spans ended at once. The batch processor exports
// 512, queues 2,048 and drops the other 440; once the first export has failed it takes spans again,
// and the next one makes it report the drop. Prints the lost-span counts as JSON and exits.
import { freePort } from "../../scripts/load/processes.ts";
import { silentLogger } from "../../lib/log.ts";
import { initMetrics } from "../../lib/observe/metrics.ts";
import { initTracing, inSpan, shutdownTracing } from "../../lib/observe/tracing.ts";

process.env.OTEL_EXPORTER_OTLP_TIMEOUT = "1000";
const M = await initMetrics();
await initTracing(`http://127.0.0.1:${freePort()}`, "span-flood", silentLogger, { scheduleDelayMs: 60_000 });
const lost = async (reason: string) =>
  (await M.spansLost.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

await Promise.all(Array.from({ length: 3000 }, () => inSpan("flood", async () => 1)));
const deadline = Date.now() + 30_000;
while ((await lost("export_failed")) === 0 && Date.now() < deadline) await Bun.sleep(50);
await inSpan("after", async () => 1);
console.log(JSON.stringify({ export_failed: await lost("export_failed"), queue_full: await lost("queue_full") }));
await shutdownTracing(100);
process.exit(0);
