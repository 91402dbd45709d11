// The OpenAI-compatible agent against a small OpenAI-compatible HTTP server this test starts,
// and a worker using it end to end (retries, 429 with Retry-After, final failure). The agent against
// the realistic fake server (OpenAI's error shape, HTTP-date Retry-After, HTML 502, slow and hung
// calls): tests/llm-errors.test.ts; worker-level retries and permanent errors: tests/retries.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openAiAgent, retryAfterMs } from "../lib/agent/openai.ts";
import { PermanentAgentError, RetryableAgentError } from "../lib/errors.ts";
import { Service } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

type Reply = { status: number; body: unknown; headers?: Record<string, string> };
const script: Reply[] = [];
const requests: { auth: string | null; body: any }[] = [];
const completion = (content: string) => ({ choices: [{ message: { role: "assistant", content } }] });
const good = completion(JSON.stringify({ tags: ["keyboards", "deals"], score: 80, reason: "asks about a price drop" }));

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    if (new URL(req.url).pathname !== "/v1/chat/completions") return new Response("no", { status: 404 });
    requests.push({ auth: req.headers.get("authorization"), body: await req.json() });
    const r = script.shift() ?? { status: 200, body: good };
    return Response.json(r.body, { status: r.status, headers: r.headers });
  },
});
const baseUrl = `http://127.0.0.1:${server.port}/v1`;
const agent = openAiAgent({ baseUrl, apiKey: "sk-test-secret", model: "test-model" });
const task = { task_id: crypto.randomUUID(), user_id: "u", content: "机械键盘降价了", attempt: 1 };
const run = () => agent(task, new AbortController().signal);

afterAll(() => server.stop(true));

describe("openAiAgent", () => {
  test("asks for JSON with the key and model, returns a validated result", async () => {
    requests.length = 0;
    expect(await run()).toEqual({ tags: ["keyboards", "deals"], score: 80, reason: "asks about a price drop" });
    expect(requests[0]!.auth).toBe("Bearer sk-test-secret");
    expect(requests[0]!.body.model).toBe("test-model");
    expect(requests[0]!.body.response_format.type).toBe("json_schema");
    expect(requests[0]!.body.messages.at(-1).content).toBe("机械键盘降价了");
  });

  test("429 with Retry-After is retryable and carries the delay", async () => {
    script.push({ status: 429, body: { error: "slow down" }, headers: { "retry-after": "7" } });
    const e = await run().catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.retryAfterMs).toBe(7_000);
  });

  // Invalid answers are repaired within the attempt: tests/llm-repair.test.ts.
  test("5xx and a 200 without choices are retryable; other 4xx are final", async () => {
    script.push({ status: 503, body: { error: "overloaded" } });
    expect(await run().catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    script.push({ status: 400, body: { error: "bad model" } });
    expect(await run().catch((x) => x)).toBeInstanceOf(PermanentAgentError);
    // near misses an LLM often makes are coerced, not failed: "80" -> 80, "x" -> ["x"]
    script.push({ status: 200, body: completion(JSON.stringify({ tags: "x", score: "80", reason: "r", extra: 1 })) });
    expect(await run()).toEqual({ tags: ["x"], score: 80, reason: "r" });
    script.push({ status: 200, body: { nothing: true } });
    expect(await run().catch((x) => x)).toBeInstanceOf(RetryableAgentError);
  });

  test("an unreachable service is retryable; an abort is passed through", async () => {
    const dead = openAiAgent({ baseUrl: "http://127.0.0.1:1/v1", apiKey: "k", model: "m" });
    expect(await dead(task, new AbortController().signal).catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    const ac = new AbortController();
    const reason = new Error("stop");
    ac.abort(reason);
    expect(await agent(task, ac.signal).catch((x) => x)).toBe(reason);
  });

  test("Retry-After as seconds or HTTP date", () => {
    expect(retryAfterMs("3")).toBe(3_000);
    expect(retryAfterMs(new Date(Date.now() + 10_000).toUTCString())! / 1000).toBeGreaterThan(8);
    expect(retryAfterMs("soon")).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });
});

describe("worker with the LLM agent", () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await testSystem();
  }, 60_000);
  afterAll(() => sys?.close(), 60_000);

  // MQ_INVISIBLE_MS at its 10 s minimum: a worker stopped during a receive's long poll can leave the
  // next message to that dead poll, and the message then waits out its invisibility before the next
  // worker gets it (seen here: a 60 s wait that pushed the second test past its deadline).
  const env = () => ({
    ...sys.ns.env, LLM_BASE_URL: baseUrl, LLM_API_KEY: "sk-test-secret", LLM_MODEL: "m", RETRY_BASE_MS: "1000", MAX_ATTEMPTS: "3",
    MQ_INVISIBLE_MS: "10000",
  });

  test("a 429 then success: retried after Retry-After, done on attempt 2; the key never reaches the logs", async () => {
    script.length = 0;
    script.push({ status: 429, body: { error: "rate limited" }, headers: { "retry-after": "2" } });
    const w = new Service("worker.ts", env());
    await w.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "llm", content: "hello" });
    await sys.waitStatus(task_id, "done", 60_000);
    const view = await sys.store.get(task_id);
    expect(view?.attempts).toBe(2);
    expect(view?.result).toEqual({ tags: ["keyboards", "deals"], score: 80, reason: "asks about a price drop" });
    const retry = w.logs("task attempt failed; will retry", task_id)[0]!;
    expect(retry.retry_in_ms).toBe(2_000);
    expect(w.raw.join("\n")).not.toContain("sk-test-secret");
    expect(await w.stop()).toBe(0);
  }, 90_000);

  test("the agent keeps failing: retried, then failed with the error and a failure result message", async () => {
    script.length = 0;
    for (let i = 0; i < 3; i++) script.push({ status: 500, body: { error: `boom ${i}` } });
    const w = new Service("worker.ts", env());
    await w.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "llm", content: "will fail" });
    await sys.waitStatus(task_id, "failed", 90_000);
    const view = await sys.store.get(task_id);
    expect(view?.attempts).toBe(3);
    expect(view?.error).toContain("500");
    expect(await w.stop()).toBe(0);
    await sys.results.settled();
    expect(sys.results.for(task_id).length).toBe(1);
    const msg = sys.results.for(task_id)[0]!;
    expect(msg.key).toBe(task_id);
    expect(msg.body).toMatchObject({ task_id, user_id: "llm", status: "failed", result: null, attempts: 3 });
    expect(String(msg.body.error)).toContain("500");
  }, 120_000);
});
