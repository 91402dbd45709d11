// Prometheus metrics as an operator scrapes them (docs/observability.md): an api.ts and a worker.ts
// (its own metrics port), N tasks through HTTP, the LLM agent on a fake OpenAI-compatible server.
// The backlog is read from the broker before the worker starts (N waiting), then the counts: N
// accepted, N done, one observation per task in the queue-wait, run and end-to-end histograms, N LLM
// calls with their tokens; label values stay bounded (no ids). METRICS_TOKEN guards both ports.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConsumeStats } from "../lib/rocketmq/admin.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { fakeOpenAI } from "./support/fake-openai.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { parseProm, scrape, sum, type Sample } from "./support/prom.ts";
import { rawRequest } from "./support/raw-http.ts";

const N = 12;
const TOKEN = "scrape-secret-for-tests";
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

let ns: TestNamespace;
let llm: ReturnType<typeof fakeOpenAI>;

beforeAll(async () => {
  ns = await createNamespace();
  llm = fakeOpenAI();
}, 60_000);

afterAll(async () => {
  await stopAll();
  llm?.stop();
  await ns?.cleanup();
}, 60_000);

/** Every label value of every sample: none may look like a task id, and each metric has few label sets (a histogram's `le` aside). */
function expectBounded(samples: Sample[]) {
  const series = new Map<string, Set<string>>();
  for (const s of samples) {
    for (const v of Object.values(s.labels)) expect(v, `${s.name} ${JSON.stringify(s.labels)}`).not.toMatch(UUID);
    const { le: _, ...rest } = s.labels;
    const base = s.name.replace(/_(bucket|sum|count)$/, "");
    if (!series.has(base)) series.set(base, new Set());
    series.get(base)!.add(JSON.stringify(rest));
  }
  for (const [name, sets] of series) expect(sets.size, `label sets of ${name}`).toBeLessThan(50);
}

describe("metrics", () => {
  test("ConsumeStats as the broker encodes it (object keys) is read per queue", () => {
    const body =
      '{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"brokerOffset":7,"consumerOffset":2,"lastTimestamp":0,"pullOffset":2},' +
      '{"brokerName":"broker-a","queueId":0,"topic":"%RETRY%G_T"}:{"brokerOffset":3,"consumerOffset":3,"lastTimestamp":1764550000000,"pullOffset":3}}}';
    expect(parseConsumeStats(body)).toEqual([
      { topic: "T", brokerName: "broker-a", queueId: 1, brokerOffset: 7, consumerOffset: 2 },
      { topic: "%RETRY%G_T", brokerName: "broker-a", queueId: 0, brokerOffset: 3, consumerOffset: 3 },
    ]);
  });

  test(`${N} tasks through the API and a worker: backlog, counts, histograms, LLM tokens; bounded labels`, async () => {
    const apiPort = freePort();
    const metricsPort = freePort();
    const env = {
      ...ns.env, API_PORT: String(apiPort), API_HOST: "127.0.0.1", METRICS_TOKEN: TOKEN,
      LLM_BASE_URL: llm.baseUrl, LLM_MODEL: "fake-model", WORKER_METRICS_PORT: String(metricsPort),
    };
    const api = new Service("api.ts", env);
    await api.waitForLog("api listening");
    const apiMetrics = `http://127.0.0.1:${apiPort}/metrics`;
    const workerMetrics = `http://127.0.0.1:${metricsPort}/metrics`;

    // A scrape without the token is refused with our JSON error.
    const refused = await fetch(apiMetrics);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: string }).error).toBe("unauthorized");

    const post = (body: string) =>
      fetch(`http://127.0.0.1:${apiPort}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const r = await post(JSON.stringify({ user_id: `metrics-user-${i}`, content: `metrics task ${i}` }));
      expect(r.status).toBe(202);
      ids.push(((await r.json()) as { task_id: string }).task_id);
    }
    expect((await post("{not json")).status).toBe(400);
    expect((await post(JSON.stringify({ user_id: "" }))).status).toBe(422);

    // No worker yet: the broker holds N messages the group has not received.
    const lag = async () => sum(await scrape(apiMetrics, TOKEN), "agent_rocketmq_consumer_lag_messages", { group: ns.group, topic: ns.requestTopic });
    await waitFor(async () => (await lag()) === N, 30_000, `consumer lag ${N} on the API's /metrics`);

    const worker = new Service("worker.ts", env);
    await worker.waitForLog("worker metrics listening");
    const wm = async () => scrape(workerMetrics, TOKEN);
    await waitFor(async () => sum(await wm(), "agent_tasks_finished_total", { status: "done" }) === N, 60_000,
      () => `${N} tasks finished on the worker's /metrics\n${worker.raw.slice(-10).join("\n")}`);

    const a = await scrape(apiMetrics, TOKEN);
    const w = await wm();
    expect(sum(a, "agent_tasks_submitted_total")).toBe(N + 2);
    expect(sum(a, "agent_tasks_accepted_total")).toBe(N);
    expect(sum(a, "agent_tasks_rejected_total", { reason: "malformed_json" })).toBe(1);
    expect(sum(a, "agent_tasks_rejected_total", { reason: "invalid_body" })).toBe(1);
    expect(sum(a, "agent_redis_command_duration_seconds_count", { command: "script:create" })).toBe(N);
    expect(sum(a, "agent_rocketmq_request_duration_seconds_count")).toBeGreaterThan(0);

    expect(sum(w, "agent_tasks_finished_total")).toBe(N);
    expect(sum(w, "agent_worker_messages_total", { loop: "tasks", outcome: "done" })).toBe(N);
    expect(sum(w, "agent_task_queue_wait_seconds_count")).toBe(N);
    expect(sum(w, "agent_task_run_seconds_count", { outcome: "ok" })).toBe(N);
    expect(sum(w, "agent_task_end_to_end_seconds_count", { status: "done" })).toBe(N);
    // Queue wait: the tasks waited for the worker to start; end to end is no shorter than the wait.
    expect(sum(w, "agent_task_end_to_end_seconds_sum")).toBeGreaterThanOrEqual(sum(w, "agent_task_queue_wait_seconds_sum"));
    expect(sum(w, "agent_worker_capacity", { loop: "tasks" })).toBe(Number(ns.config.WORKER_CONCURRENCY));
    expect(sum(w, "agent_redis_command_duration_seconds_count", { command: "script:claim" })).toBeGreaterThanOrEqual(N);
    expect(sum(w, "agent_redis_errors_total")).toBe(0);
    // The LLM: one call per task (the fake answers well), tokens as its `usage` said.
    const calls = llm.requests.length;
    expect(calls).toBe(N);
    expect(sum(w, "agent_llm_calls_total", { model: "fake-model", outcome: "ok" })).toBe(N);
    expect(sum(w, "agent_llm_tokens_total", { model: "fake-model", direction: "in" })).toBeGreaterThan(0);
    expect(sum(w, "agent_llm_tokens_total", { model: "fake-model", direction: "out" })).toBeGreaterThan(0);
    expect(sum(w, "agent_llm_call_duration_seconds_count", { model: "fake-model" })).toBe(N);
    await waitFor(async () => sum(await wm(), "agent_worker_tasks_in_flight", { loop: "tasks" }) === 0, 10_000, "no task in flight");
    // All received: the backlog is gone.
    await waitFor(async () => (await lag()) === 0, 30_000, "consumer lag back to 0");

    expectBounded(a);
    expectBounded(w);
    // The worker's port serves /metrics only.
    expect((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status).toBe(404);
    expect((await fetch(workerMetrics)).status).toBe(401);
    // Also without a Host header (HTTP/1.0) or with a malformed one: our JSON, never a 500.
    for (const host of ["", "Host: a b\r\n", "Host: [::1\r\n"])
      for (const [path, status] of [["/nope", 404], ["/metrics", 401]] as const) {
        const r = await rawRequest(metricsPort, host ? `GET ${path} HTTP/1.1\r\n${host}Connection: close\r\n\r\n` : `GET ${path} HTTP/1.0\r\n\r\n`);
        expect(r.status, `${path} ${JSON.stringify(host)}: ${r.body.slice(0, 200)}`).toBe(status);
        expect(r.headers).toContain("content-type: application/json");
      }

    expect(await worker.stop()).toBe(0);
    expect(await api.stop()).toBe(0);
  }, 120_000);

  test("the text parses as Prometheus exposition (names, HELP and TYPE lines)", async () => {
    const port = freePort();
    const api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1" });
    await api.waitForLog("api listening");
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain("# TYPE agent_tasks_accepted_total counter");
    expect(text).toContain("# TYPE agent_task_queue_wait_seconds histogram");
    expect(parseProm(text).length).toBeGreaterThan(0);
    // METRICS_ENABLED=false: no route (404 from the API's own JSON).
    await api.stop();
    const off = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", METRICS_ENABLED: "false" });
    await off.waitForLog("api listening");
    const gone = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: string }).error).toBe("not_found");
    expect(await off.stop()).toBe(0);
  }, 60_000);
});
