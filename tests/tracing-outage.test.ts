// Tracing when the collector is away (docs/observability.md, "When the collector is away"): tasks run
// as before, the operator reads in the log that spans are being lost (a warning, not one a batch) and
// in the metrics how many (agent_trace_spans_lost_total), and
// SIGTERM still exits cleanly: the flush at shutdown gives up after 3 s instead of waiting out the
// exporter's own timeout. The collector's credentials (OTEL_EXPORTER_OTLP_HEADERS,
// a password in the endpoint URL) reach no log line.
// Two collectors that fail differently: the API's accepts connections and never answers (a hung
// collector, the exporter's timeout set far beyond the API's 15 s shutdown deadline); the worker's port
// is closed (a collector that is down).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { scrape, sum } from "./support/prom.ts";
import { blackHole } from "./support/tcp-proxy.ts";

let ns: TestNamespace;
let hung: Awaited<ReturnType<typeof blackHole>>;

beforeAll(async () => {
  ns = await createNamespace();
  hung = await blackHole();
}, 60_000);

afterAll(async () => {
  await stopAll();
  hung?.close();
  await ns?.cleanup();
}, 60_000);

const HEADER_SECRET = "hdr-" + crypto.randomUUID();
const URL_SECRET = "pw-" + crypto.randomUUID();

describe("tracing with the collector away", () => {
  test("tasks are done, the loss is logged once in a while, shutdown exits 0, no credential in the logs", async () => {
    const port = freePort();
    const common = {
      ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", AGENT_DELAY_MS: "0",
      OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${HEADER_SECRET}`,
    };
    const hungPort = hung.port;
    const api = new Service("api.ts", {
      ...common, OTEL_EXPORTER_OTLP_ENDPOINT: `http://collector:${URL_SECRET}@127.0.0.1:${hungPort}`, OTEL_EXPORTER_OTLP_TIMEOUT: "120000",
    });
    const metricsPort = freePort();
    const worker = new Service("worker.ts", {
      ...common, OTEL_EXPORTER_OTLP_ENDPOINT: `http://collector:${URL_SECRET}@127.0.0.1:${freePort()}`, OTEL_EXPORTER_OTLP_TIMEOUT: "2000",
      WORKER_METRICS_PORT: String(metricsPort),
    });
    await api.waitForLog("api listening");
    await worker.waitForLog("worker running");

    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "no-collector", content: `task ${i} while the collector is away` }),
      });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { task_id: string }).task_id);
    }
    let statuses: string[] = [];
    const allDone = async () => {
      statuses = await Promise.all(ids.map(async (id) => ((await (await fetch(`http://127.0.0.1:${port}/tasks/${id}`)).json()) as { status: string }).status));
      return statuses.every((s) => s === "done");
    };
    await waitFor(allDone, 60_000, () => `all ${ids.length} tasks done; got ${statuses.join(",")}`);

    // The worker's exports fail at once (connection refused): one warning, not one per batch.
    await worker.waitForLog("spans not exported", 30_000);
    const warned = worker.logs("spans not exported");
    expect(warned[0]!.level).toBe("warn");
    expect(String(warned[0]!.error)).not.toBe("");
    expect(warned.length).toBeLessThanOrEqual(2);
    // ... and counted, span by span, for an alert: the worker's 30 tasks made 4 spans each (no LLM call).
    const lost = async () => sum(await scrape(`http://127.0.0.1:${metricsPort}/metrics`), "agent_trace_spans_lost_total", { reason: "export_failed" });
    await waitFor(async () => (await lost()) >= 120, 30_000, "120 spans counted lost");

    // The API's collector holds its one export open: the flush at shutdown stops waiting for it.
    expect(await api.stop()).toBe(0);
    expect(api.logs("spans not flushed at shutdown").length).toBe(1);
    expect(await worker.stop()).toBe(0);
    expect(worker.logs("shutdown complete").length).toBe(1);

    for (const s of [api, worker]) {
      const all = s.raw.join("\n");
      expect(all).not.toContain(HEADER_SECRET);
      expect(all).not.toContain(URL_SECRET);
    }
    // The endpoint is still named, without its password.
    expect(api.logs("tracing on: spans exported over OTLP/HTTP")[0]!.url).toBe(`http://127.0.0.1:${hungPort}/v1/traces`);
  }, 120_000);
});
