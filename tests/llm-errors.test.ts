// The OpenAI-compatible agent (lib/agent/openai.ts) against the fake OpenAI-compatible server of
// tests/support/fake-openai.ts, which answers as the real service and its gateways do: full completions
// (id, model, finish_reason, usage), errors in OpenAI's {error: {message, type, param, code}} shape,
// Retry-After in seconds or as an HTTP date, an nginx HTML 502, slow answers and hangs.
// Invalid answers are left to the agent's own tests (llm-agent.test.ts): how they are handled is the
// agent's policy, not the server's.
import { afterAll, describe, expect, test } from "bun:test";
import { openAiAgent } from "../lib/agent/openai.ts";
import { PermanentAgentError, RetryableAgentError } from "../lib/errors.ts";
import { fakeOpenAI, GOOD, httpDateIn, steps } from "./support/fake-openai.ts";
import { waitFor } from "./support/processes.ts";

const llm = fakeOpenAI();
const agent = openAiAgent({ baseUrl: llm.baseUrl, apiKey: "sk-test-secret", model: "test-model" });
/** Each test its own content, so its script and its requests are its own. */
const task = (content: string) => ({ task_id: crypto.randomUUID(), user_id: "u", content, attempt: 1 });
const run = (content: string, signal = new AbortController().signal) => agent(task(content), signal);

afterAll(() => llm.stop());

describe("openAiAgent against a realistic OpenAI-compatible server", () => {
  test("asks for JSON with the key and model, returns the validated result of a full completion", async () => {
    expect(await run("机械键盘降价了")).toEqual(GOOD);
    const [req] = llm.for("机械键盘降价了");
    expect(req!.auth).toBe("Bearer sk-test-secret");
    expect(req!.body.model).toBe("test-model");
    expect(["json_object", "json_schema"]).toContain((req!.body.response_format as { type: string }).type);
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

  test("5xx is retryable; other 4xx are final, with OpenAI's error code in the message", async () => {
    llm.script("500", steps.serverError());
    expect(await run("500").catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    llm.script("400", steps.badRequest());
    const bad = await run("400").catch((x) => x);
    expect(bad).toBeInstanceOf(PermanentAgentError);
    expect(bad.message).toContain("model_not_found");
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

  test("a streamed answer is read chunk by chunk; one cut short (no finish_reason) is retryable, not repaired", async () => {
    llm.script("streamed", steps.streamed(GOOD, 10, 5));
    const partials: string[] = [];
    expect(await agent({ ...task("streamed"), progress: (p) => partials.push(p.partial!) }, new AbortController().signal)).toEqual(GOOD);
    expect(llm.for("streamed")[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(partials.at(-1)).toBe(JSON.stringify(GOOD));
    llm.script("cut", { kind: "answer", content: JSON.stringify(GOOD), pieces: 5, cutAfter: 2 });
    const e = await run("cut").catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.message).toContain("no finish_reason");
    expect(llm.for("cut")).toHaveLength(1); // not sent back for a repair
  });

  test("an unreachable service is retryable; an abort before the call is passed through", async () => {
    const dead = openAiAgent({ baseUrl: "http://127.0.0.1:1/v1", apiKey: "k", model: "m" });
    expect(await dead(task("x"), new AbortController().signal).catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    const ac = new AbortController();
    const reason = new Error("stop");
    ac.abort(reason);
    expect(await run("aborted", ac.signal).catch((x) => x)).toBe(reason);
  });

});
