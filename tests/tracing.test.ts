// OpenTelemetry traces end to end (docs/observability.md): an api.ts and a worker.ts exporting over
// OTLP/HTTP (JSON) to a receiver this test starts, the LLM agent on a fake OpenAI-compatible server.
// One POST with a W3C traceparent gives one trace: submit (API, whose context the request message
// carries) -> claim, agent run -> chat (LLM), send (result topic), finish (worker), across both
// processes and the broker, and the result message carries the trace context. The
// batched send path (remoting, lib/mq/remoting-batch.ts) carries message properties too. A caller's
// unsampled trace records nothing but still carries its trace id into the result message.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { encodeJson, RESULT_TAG } from "../lib/model.ts";
import { Publisher } from "../lib/mq.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { fakeOpenAI } from "./support/fake-openai.ts";
import { otlpReceiver } from "./support/otlp-receiver.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { collectResults } from "./support/results.ts";

let ns: TestNamespace;
let llm: ReturnType<typeof fakeOpenAI>;
let receiver: ReturnType<typeof otlpReceiver>;
let results: Awaited<ReturnType<typeof collectResults>>;

beforeAll(async () => {
  ns = await createNamespace();
  llm = fakeOpenAI();
  receiver = otlpReceiver();
  results = await collectResults(ns);
}, 60_000);

afterAll(async () => {
  await stopAll();
  await results?.close().catch(() => {});
  llm?.stop();
  receiver?.stop();
  await ns?.cleanup();
}, 60_000);

const hex = (n: number) => randomBytes(n).toString("hex");
// OTLP's Span.SpanKind numbers
const SPAN_KIND_PRODUCER = 4;
const SPAN_KIND_CONSUMER = 5;

describe("tracing", () => {
  test("one trace from the POST's traceparent through the API, RocketMQ, the worker and the LLM into the result message", async () => {
    const port = freePort();
    const env = {
      ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", LLM_BASE_URL: llm.baseUrl, LLM_MODEL: "fake-model",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: "200",
    };
    const api = new Service("api.ts", env);
    const worker = new Service("worker.ts", env);
    await api.waitForLog("api listening");
    await worker.waitForLog("worker running");

    const traceId = hex(16);
    const callerSpan = hex(8);
    const res = await fetch(`http://127.0.0.1:${port}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-${callerSpan}-01` },
      body: JSON.stringify({ user_id: "tracer", content: "a traced task" }),
    });
    expect(res.status).toBe(202);
    const { task_id } = (await res.json()) as { task_id: string };

    const names = ["submit", "claim", "agent run", "chat fake-model", `send ${ns.resultTopic}`, "finish"];
    await waitFor(() => names.every((n) => receiver.trace(traceId).some((s) => s.name === n)), 30_000,
      () => `spans ${names.join(", ")} of trace ${traceId}; got ${receiver.trace(traceId).map((s) => s.name).join(", ") || "none"} ` +
        `(${receiver.spans.length} spans in all; problems: ${receiver.problems.join("; ")})`);
    const span = (name: string) => {
      const found = receiver.trace(traceId).filter((s) => s.name === name);
      expect(found.length, name).toBe(1);
      return found[0]!;
    };
    const submit = span("submit");
    const claim = span("claim");
    const agentRun = span("agent run");
    const chat = span("chat fake-model");
    const sendResult = span(`send ${ns.resultTopic}`);
    const finish = span("finish");

    // The chain of parents, across the two processes and the broker.
    expect(submit.parentSpanId).toBe(callerSpan);
    expect(submit.service).toBe("agent-prod-api");
    for (const child of [claim, agentRun, sendResult, finish]) {
      expect(child.parentSpanId, child.name).toBe(submit.spanId);
      expect(child.service, child.name).toBe("agent-prod-worker");
    }
    expect(chat.parentSpanId).toBe(agentRun.spanId);

    // Semantic conventions: messaging and GenAI attributes; the task id on the claim, not in a metric.
    expect(claim.kind).toBe(SPAN_KIND_CONSUMER);
    expect(claim.attributes["messaging.system"]).toBe("rocketmq");
    expect(claim.attributes["messaging.destination.name"]).toBe(ns.requestTopic);
    expect(claim.attributes["messaging.consumer.group.name"]).toBe(ns.group);
    expect(claim.attributes["agent.task_id"]).toBe(task_id);
    expect(claim.attributes["agent.claim"]).toBe("claimed");
    expect(sendResult.kind).toBe(SPAN_KIND_PRODUCER);
    expect(sendResult.attributes["messaging.destination.name"]).toBe(ns.resultTopic);
    expect(finish.attributes["agent.status"]).toBe("done");
    expect(chat.attributes["gen_ai.request.model"]).toBe("fake-model");
    expect(Number(chat.attributes["gen_ai.usage.input_tokens"])).toBeGreaterThan(0);
    expect(submit.attributes["http.response.status_code"]).toBe(202);

    // The result message carries the context of the worker's send span.
    await waitFor(() => results.for(task_id).length > 0, 30_000, "the result message");
    expect(results.for(task_id)[0]!.properties.get("traceparent")).toBe(`00-${traceId}-${sendResult.spanId}-01`);

    // Without a traceparent, a new trace starts at the API and still reaches the worker.
    const res2 = await fetch(`http://127.0.0.1:${port}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: "tracer", content: "an untraced client" }),
    });
    const second = ((await res2.json()) as { task_id: string }).task_id;
    await waitFor(() => receiver.spans.some((s) => s.name === "claim" && s.attributes["agent.task_id"] === second), 30_000, "the second task's claim span");
    const claim2 = receiver.spans.find((s) => s.name === "claim" && s.attributes["agent.task_id"] === second)!;
    expect(claim2.traceId).not.toBe(traceId);
    await waitFor(() => receiver.trace(claim2.traceId).some((s) => s.name === "submit"), 30_000, "the second trace's submit span");
    expect(receiver.trace(claim2.traceId).find((s) => s.name === "submit")!.parentSpanId).toBe("");

    // A caller's trace that is not sampled (flags 00): nothing recorded, but its id still travels.
    const unsampled = hex(16);
    const res3 = await fetch(`http://127.0.0.1:${port}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${unsampled}-${hex(8)}-00` },
      body: JSON.stringify({ user_id: "tracer", content: "a caller that samples this one out" }),
    });
    const third = ((await res3.json()) as { task_id: string }).task_id;
    await waitFor(() => results.for(third).length > 0, 30_000, "the unsampled task's result message");
    expect(results.for(third)[0]!.properties.get("traceparent")).toMatch(new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`));

    // Stopping flushes the exporters: after it, what was not recorded is known not to come.
    expect(await worker.stop()).toBe(0);
    expect(await api.stop()).toBe(0);
    expect(receiver.trace(unsampled)).toEqual([]);
    // A task's spans are its steps and no more (docs/observability.md, "Overhead").
    expect(receiver.trace(traceId).map((s) => s.name).sort()).toEqual([...names].sort());
    expect(receiver.problems).toEqual([]);
  }, 90_000);

  test("a batch sent over remoting keeps each message's own properties", async () => {
    const cfg = parseConfig(ns.env);
    const publisher = new Publisher(cfg, silentLogger, [ns.resultTopic]);
    try {
      const ids = Array.from({ length: 5 }, () => crypto.randomUUID());
      const parents = ids.map(() => `00-${hex(16)}-${hex(8)}-01`);
      // Sent in one turn of the event loop: one batch request (counters.requests).
      await Promise.all(ids.map((id, i) =>
        publisher.send({ topic: ns.resultTopic, tag: RESULT_TAG, key: id, body: encodeJson({ task_id: id }), properties: { traceparent: parents[i]! } }),
      ));
      expect(publisher.counters).toMatchObject({ requests: 1, messages: 5, splits: 0 });
      await waitFor(() => ids.every((id) => results.for(id).length > 0), 30_000, "the batch's 5 messages");
      ids.forEach((id, i) => expect(results.for(id)[0]!.properties.get("traceparent")).toBe(parents[i]!));
    } finally {
      await publisher.close();
    }
  }, 60_000);
});
