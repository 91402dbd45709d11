// Run by tests/tracing-warnings.test.ts in a process of its own (tracing's state is process-wide):
// tracing towards a closed port, metrics on, 3,000 spans ended at once (all within one turn of the
// event loop, so before any export can fail). The batch processor sends 512, queues 2,048 and drops
// the other 440; once an export has failed it has room again, and the next span (one more) makes it
// report the drop. Then everything left is flushed, and the script waits until every span it did not
// drop is counted in a failed export: 2,561, however fast or slow the refusals come. Prints the
// lost-span counts as JSON and exits.
import { silentLogger } from "../../lib/log.ts";
import { initMetrics } from "../../lib/observe/metrics.ts";
import { flushTracing, initTracing, inSpan, shutdownTracing } from "../../lib/observe/tracing.ts";
import { freePort, waitFor } from "./processes.ts";

const SPANS = 3000;
const KEPT = 512 + 2048 + 1; // the first batch, the queue, the span after the drop

process.env.OTEL_EXPORTER_OTLP_TIMEOUT = "1000";
const M = await initMetrics();
await initTracing(`http://127.0.0.1:${freePort()}`, "span-flood", silentLogger, { scheduleDelayMs: 60_000 });
const lost = async (reason: string) =>
  (await M.spansLost.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

await Promise.all(Array.from({ length: SPANS }, () => inSpan("flood", async () => 1)));
await waitFor(async () => (await lost("export_failed")) > 0, 30_000, "the first failed export");
await inSpan("after", async () => 1);
await flushTracing().catch(() => {}); // fails: the port is closed
await waitFor(async () => (await lost("export_failed")) >= KEPT, 30_000, `${KEPT} spans counted in failed exports`);
console.log(JSON.stringify({ export_failed: await lost("export_failed"), queue_full: await lost("queue_full") }));
await shutdownTracing(100);
process.exit(0);
