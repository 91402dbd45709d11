// The OpenAI-compatible agent against a fake OpenAI-compatible server (tests/support/fake-openai.ts:
// realistic answers and errors), and a worker using it end to end (retries, 429 with Retry-After,
// final failure). More worker-level LLM cases: tests/retries.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openAiAgent, retryAfterMs } from "../lib/agent/openai.ts";
import { PermanentAgentError, RetryableAgentError } from "../lib/errors.ts";
import { fakeOpenAI, GOOD, httpDateIn, steps } from "./support/fake-openai.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const llm = fakeOpenAI();
const agent = openAiAgent({ baseUrl: llm.baseUrl, apiKey: "sk-test-secret", model: "test-model" });
/** Each test its own content, so its script and its requests are its own. */
const task = (content: string) => ({ task_id: crypto.randomUUID(), user_id: "u", content, attempt: 1 });
const run = (content: string, signal = new AbortController().signal) => agent(task(content), signal);

afterAll(() => llm.stop());

describe("openAiAgent", () => {
  test("asks for JSON with the key and model, returns the validated result of a full completion", async () => {
    expect(await run("机械键盘降价了")).toEqual(GOOD);
    const [req] = llm.for("机械键盘降价了");
    expect(req!.auth).toBe("Bearer sk-test-secret");
    expect(req!.body.model).toBe("test-model");
    expect(req!.body.response_format).toEqual({ type: "json_object" });
    expect(req!.ended).toBe("answered");
  });

  test("429 with Retry-After in seconds is retryable and carries the delay", async () => {
    llm.script("429 s", steps.rateLimited("7"));
    const e = await run("429 s").catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.retryAfterMs).toBe(7_000);
    expect(e.message).toContain("rate_limit_exceeded"); // the OpenAI error body reaches the task's error
  });

  test("503 with Retry-After as an HTTP date is retryable and carries the delay", async () => {
    llm.script("503 date", steps.overloaded(httpDateIn(10_000)));
    const e = await run("503 date").catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    // the date has second resolution: 9 to 10 s from when it was written
    expect(e.retryAfterMs).toBeGreaterThan(8_000);
    expect(e.retryAfterMs).toBeLessThanOrEqual(10_000);
  });

  test("a gateway's HTML 502 is retryable, not a parse failure", async () => {
    llm.script("502", steps.gateway());
    const e = await run("502").catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.message).toContain("502");
  });

  test("5xx is retryable; other 4xx and invalid answers are final", async () => {
    llm.script("500", steps.serverError());
    expect(await run("500").catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    llm.script("400", steps.badRequest());
    const bad = await run("400").catch((x) => x);
    expect(bad).toBeInstanceOf(PermanentAgentError);
    expect(bad.message).toContain("model_not_found");
    llm.script("not json", steps.answer("not json at all"));
    expect(await run("not json").catch((x) => x)).toBeInstanceOf(PermanentAgentError);
    llm.script("no tags", steps.answer({ score: 1, reason: "r" }));
    expect(await run("no tags").catch((x) => x)).toBeInstanceOf(PermanentAgentError);
    // near misses an LLM often makes are coerced, not failed: "80" -> 80, "x" -> ["x"]
    llm.script("near miss", steps.answer({ tags: "x", score: "80", reason: "r", extra: 1 }));
    expect(await run("near miss")).toEqual({ tags: ["x"], score: 80, reason: "r" });
  });

  test("a slow answer is waited for; a hang ends when the signal aborts, and the request is cancelled", async () => {
    llm.script("slow", steps.answer(GOOD, 1_500));
    expect(await run("slow")).toEqual(GOOD);
    llm.script("hang", steps.hang());
    const reason = new Error("call timeout");
    const ac = new AbortController();
    const pending = run("hang", ac.signal).catch((x) => x);
    await waitFor(() => llm.for("hang").length === 1, 10_000, "the request to reach the server");
    ac.abort(reason);
    expect(await pending).toBe(reason);
    await waitFor(() => llm.for("hang")[0]!.ended === "client_aborted", 10_000, "the server to see the client leave");
  });

  test("an unreachable service is retryable; an abort before the call is passed through", async () => {
    const dead = openAiAgent({ baseUrl: "http://127.0.0.1:1/v1", apiKey: "k", model: "m" });
    expect(await dead(task("x"), new AbortController().signal).catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    const ac = new AbortController();
    const reason = new Error("stop");
    ac.abort(reason);
    expect(await run("aborted", ac.signal).catch((x) => x)).toBe(reason);
  });

  test("Retry-After as seconds or HTTP date", () => {
    expect(retryAfterMs("3")).toBe(3_000);
    expect(retryAfterMs(httpDateIn(10_000))! / 1000).toBeGreaterThan(8);
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
    ...sys.ns.env, LLM_BASE_URL: llm.baseUrl, LLM_API_KEY: "sk-test-secret", LLM_MODEL: "m", RETRY_BASE_MS: "1000", MAX_ATTEMPTS: "3",
    MQ_INVISIBLE_MS: "10000",
  });

  test("a 429 then success: retried after Retry-After, done on attempt 2; the key never reaches the logs", async () => {
    llm.script("w 429", steps.rateLimited("2"));
    const w = new Service("worker.ts", env());
    await w.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "llm", content: "w 429" });
    await sys.waitStatus(task_id, "done", 60_000);
    const view = await sys.store.get(task_id);
    expect(view?.attempts).toBe(2);
    expect(view?.result).toEqual(GOOD);
    expect(w.logs("task attempt failed; will retry", task_id).map((l) => l.retry_in_ms)).toEqual([2_000]);
    expect(await w.stop()).toBe(0);
    expect(w.raw.join("\n")).not.toContain("sk-test-secret");
  }, 90_000);

  test("the agent keeps failing: retried, then failed with the error and a failure result message", async () => {
    llm.script("w 500", steps.serverError(), steps.serverError(), steps.serverError());
    const w = new Service("worker.ts", env());
    await w.waitForLog("worker running");
    const { task_id } = await sys.tasks.submit({ user_id: "llm", content: "w 500" });
    await waitFor(async () => (await sys.statusOf(task_id)) === "failed", 90_000,
      () => `task ${task_id} failed\n${w.raw.slice(-30).join("\n")}\nrequests: ${JSON.stringify(llm.for("w 500").map((r) => r.ended))}`);
    const view = await sys.store.get(task_id);
    expect(view?.attempts).toBe(3);
    expect(view?.error).toContain("500");
    expect(llm.for("w 500").length).toBe(3);
    expect(await w.stop()).toBe(0);
    await sys.results.settled();
    expect(sys.results.for(task_id).length).toBe(1);
    const msg = sys.results.for(task_id)[0]!;
    expect(msg.key).toBe(task_id);
    expect(msg.body).toMatchObject({ task_id, user_id: "llm", status: "failed", result: null, attempts: 3 });
    expect(String(msg.body.error)).toContain("500");
  }, 120_000);
});
