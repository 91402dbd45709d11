// The agent's defences against a real model, against a scripted OpenAI-compatible server this file
// starts: repair of invalid answers, response-format fallback, per-call timeout, the per-process bound
// on calls in flight, and a worker whose tasks wait for that bound without timing out or being
// delivered again. The real model itself: tests/llm-real.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runClock } from "../lib/agent/clock.ts";
import { openAiAgent } from "../lib/agent/openai.ts";
import { Semaphore } from "../lib/agent/semaphore.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { PermanentAgentError, RetryableAgentError } from "../lib/errors.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

type Reply = { status?: number; body?: unknown; content?: string; delayMs?: number };
/** Replies for the next requests, in order; an empty script answers a valid profile at once. */
const script: Reply[] = [];
const requests: any[] = [];
let inFlight = 0;
let maxInFlight = 0;
/** Applies to every request when set: how a llama.cpp-like server refuses json_schema. */
let refuse: ((body: any) => Reply | undefined) | undefined;
const valid = { tags: ["keyboards"], score: 70, reason: "asks about a price drop" };
const completion = (content: string, finish = "stop") => ({ choices: [{ message: { role: "assistant", content }, finish_reason: finish }] });

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    const body = await req.json();
    requests.push(body);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const r = refuse?.(body) ?? script.shift() ?? {};
      if (r.delayMs) await Bun.sleep(r.delayMs);
      const out = r.body ?? completion(r.content ?? JSON.stringify(valid));
      return Response.json(out, { status: r.status ?? 200 });
    } finally {
      inFlight--;
    }
  },
});
const baseUrl = `http://127.0.0.1:${server.port}/v1`;
const task = { task_id: "t-1", user_id: "u", content: "机械键盘降价了", attempt: 1 };
const never = () => new AbortController().signal;
/** A fresh script; waits out answers still being delivered to calls that gave up (timeouts). */
async function reset() {
  await waitFor(() => inFlight === 0, 10_000, "the fake server's earlier answers");
  script.length = 0;
  requests.length = 0;
  maxInFlight = 0;
  refuse = undefined;
}
/** What llama-cpp-python 0.3.36 answers to a json_schema response_format: a 500 carrying pydantic's error. */
const llamaCpp500 = (body: any): Reply | undefined =>
  body.response_format?.type === "json_schema"
    ? {
        status: 500,
        body: { error: { message: "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}", type: "internal_server_error" } },
      }
    : undefined;

afterAll(() => server.stop(true));

describe("repair of invalid answers", () => {
  test("an answer that is not JSON goes back with the error; the repaired answer is the result", async () => {
    await reset();
    script.push({ content: "Sure! Here is the profile: tags keyboards" });
    const agent = openAiAgent({ baseUrl, model: "m" });
    expect(await agent(task, never())).toEqual(valid);
    expect(requests.length).toBe(2);
    const msgs = requests[1].messages;
    expect(msgs.at(-2)).toEqual({ role: "assistant", content: "Sure! Here is the profile: tags keyboards" });
    expect(msgs.at(-1).role).toBe("user");
    expect(msgs.at(-1).content).toContain("not valid JSON");
  });

  test("a missing field is named in the repair message; a cut-off answer is called so", async () => {
    await reset();
    script.push({ content: JSON.stringify({ tags: ["a"], score: 3 }) });
    script.push({ body: completion('{"tags": ["a"], "score": 3, "reason": "this goes on and on', "length") });
    const agent = openAiAgent({ baseUrl, model: "m", repairTries: 2 });
    expect(await agent(task, never())).toEqual(valid);
    expect(requests[1].messages.at(-1).content).toContain("reason");
    expect(requests[2].messages.at(-1).content).toContain("cut off");
  });

  test("still invalid after LLM_REPAIR_TRIES repairs: a retryable failure, after 1 + tries calls", async () => {
    await reset();
    for (let i = 0; i < 3; i++) script.push({ content: JSON.stringify({ tags: [], score: 1, reason: "r" }) });
    const agent = openAiAgent({ baseUrl, model: "m", repairTries: 2 });
    const e = await agent(task, never()).catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.message).toContain("after 2 repair");
    expect(requests.length).toBe(3);
  });

  test("near misses are fixed without a repair call: score clamped, blank and extra tags dropped", async () => {
    await reset();
    script.push({ content: JSON.stringify({ tags: [" a ", "", "b", "c", "d", "e", "f"], score: 250, reason: " r ", mood: "x" }) });
    const agent = openAiAgent({ baseUrl, model: "m" });
    expect(await agent(task, never())).toEqual({ tags: ["a", "b", "c", "d", "e"], score: 100, reason: "r" });
    // a raw newline inside a string (llama-cpp-python's grammar lets it through; JSON does not)
    script.push({ content: '{"tags": ["buy", "}\nWhat"], "score": 4, "reason": "a\nb"}' });
    expect(await agent(task, never())).toEqual({ tags: ["buy", "} What"], score: 4, reason: "a b" });
    expect(requests.length).toBe(2);
  });

  test("a 4xx is final, with no repair and no format fallback", async () => {
    await reset();
    script.push({ status: 400, body: { error: { message: "model not found" } } });
    const e = await openAiAgent({ baseUrl, model: "m" })(task, never()).catch((x) => x);
    expect(e).toBeInstanceOf(PermanentAgentError);
    expect(requests.length).toBe(1);
  });
});

describe("response format", () => {
  test("json_schema first; refused (llama-cpp-python's 500 naming response_format): json_object + schema, remembered", async () => {
    await reset();
    refuse = llamaCpp500;
    const agent = openAiAgent({ baseUrl, model: "m" });
    expect(await agent(task, never())).toEqual(valid);
    expect(await agent(task, never())).toEqual(valid);
    expect(requests.map((r) => r.response_format.type)).toEqual(["json_schema", "json_object", "json_object"]);
    expect(requests[1].response_format.schema.required).toEqual(["tags", "score", "reason"]);
    expect(agent.format()).toBe("json_object+schema");
  });

  test("a 422 naming response_format is a refusal too; one refusing every format: plain json_object last, then final", async () => {
    await reset();
    refuse = () => ({ status: 422, body: { error: "unsupported response_format" } });
    const agent = openAiAgent({ baseUrl, model: "m" });
    expect(await agent(task, never()).catch((x) => x)).toBeInstanceOf(PermanentAgentError);
    expect(requests.map((r) => r.response_format)).toMatchObject([{ type: "json_schema" }, { type: "json_object" }, { type: "json_object" }]);
    expect(requests[2].response_format.schema).toBeUndefined();
  });

  test("a 5xx that does not name response_format is an ordinary retryable failure, no fallback", async () => {
    await reset();
    script.push({ status: 503, body: { error: "overloaded" } });
    const agent = openAiAgent({ baseUrl, model: "m" });
    expect(await agent(task, never()).catch((x) => x)).toBeInstanceOf(RetryableAgentError);
    expect(agent.format()).toBe("json_schema");
  });

  test("calls in flight refused together move the format on once", async () => {
    await reset();
    refuse = (b) => (llamaCpp500(b) ? { ...llamaCpp500(b)!, delayMs: 100 } : undefined);
    const agent = openAiAgent({ baseUrl, model: "m" });
    await Promise.all([agent(task, never()), agent(task, never()), agent(task, never())]);
    expect(agent.format()).toBe("json_object+schema");
  });
});

describe("timeouts and concurrency", () => {
  test("each call has its own timeout: a slow answer is a retryable failure, not an abort of the run", async () => {
    await reset();
    script.push({ delayMs: 2_000 });
    const run = new AbortController();
    const e = await openAiAgent({ baseUrl, model: "m", timeoutMs: 300 })(task, run.signal).catch((x) => x);
    expect(e).toBeInstanceOf(RetryableAgentError);
    expect(e.message).toContain("timed out after 300 ms");
    expect(run.signal.aborted).toBe(false);
  });

  test("LLM_MAX_CONCURRENCY bounds the calls in flight; a task holds its slot through its repairs", async () => {
    await reset();
    for (let i = 0; i < 8; i++) script.push({ delayMs: 100, content: i === 0 ? "oops" : undefined });
    const slots = new Semaphore(2);
    const agent = openAiAgent({ baseUrl, model: "m", slots });
    const results = await Promise.all(Array.from({ length: 6 }, () => agent(task, never())));
    expect(results).toEqual(Array(6).fill(valid));
    expect(requests.length).toBe(7);
    expect(maxInFlight).toBe(2);
    expect(slots.inUse).toBe(0);
  });

  test("Semaphore: first come first served; an aborted waiter leaves without a slot", async () => {
    const s = new Semaphore(1);
    const order: number[] = [];
    const r1 = await s.acquire();
    const ac = new AbortController();
    const w2 = s.acquire(ac.signal);
    const w3 = s.acquire().then((r) => (order.push(3), r));
    ac.abort(new Error("gone"));
    expect(await w2.catch((e) => e.message)).toBe("gone");
    r1();
    r1(); // a second release does nothing
    (await w3)();
    expect(order).toEqual([3]);
    expect(s.inUse).toBe(0);
    expect(s.waiting).toBe(0);
  });

  test("runClock: time spent paused does not count", async () => {
    let fired = 0;
    const clock = runClock(300, () => fired++);
    await clock.paused(() => Bun.sleep(500));
    expect(fired).toBe(0);
    await waitFor(() => fired === 1, 5_000, "the clock to fire after its remaining time");
    const stopped = runClock(50, () => fired++);
    stopped.stop();
    await Bun.sleep(150);
    expect(fired).toBe(1);
  });
});

describe("configuration", () => {
  test("LLM_API_KEY may be left out for a server on this machine only", () => {
    expect(parseConfig({ LLM_BASE_URL: "http://127.0.0.1:18090/v1" }).LLM_API_KEY).toBeUndefined();
    expect(parseConfig({ LLM_BASE_URL: "http://localhost:8080/v1" }).LLM_MAX_CONCURRENCY).toBe(4);
    const problems = (env: Record<string, string>) => {
      try {
        parseConfig(env);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(problems({ LLM_BASE_URL: "https://api.openai.com/v1" })[0]).toContain("LLM_API_KEY is needed");
    expect(problems({ LLM_API_KEY: "sk-x" })[0]).toContain("LLM_BASE_URL is not");
    expect(problems({ LLM_BASE_URL: "ftp://x" })[0]).toContain("not an http(s) URL");
    expect(problems({ LLM_BASE_URL: "https://api.openai.com/v1", LLM_API_KEY: "sk-x" })).toEqual([]);
  });
});

describe("worker waiting for an LLM slot", () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await testSystem();
  }, 60_000);
  afterAll(() => sys?.close(), 60_000);

  // One slot, 2.5 s per call, 6 tasks at once: the last waits ~12 s for its slot, longer than its
  // TASK_TIMEOUT_MS (5 s) and than MQ_INVISIBLE_MS (10 s, the least allowed).
  test("tasks queued behind LLM_MAX_CONCURRENCY=1 neither time out nor come back from RocketMQ", async () => {
    await reset();
    for (let i = 0; i < 6; i++) script.push({ delayMs: 2_500 });
    const w = new Service("worker.ts", {
      ...sys.ns.env, LLM_BASE_URL: baseUrl, LLM_MODEL: "m", LLM_MAX_CONCURRENCY: "1", TASK_TIMEOUT_MS: "5000",
      MQ_INVISIBLE_MS: "10000", MAX_ATTEMPTS: "1",
    });
    await w.waitForLog("worker running");
    const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => sys.tasks.submit({ user_id: "slot", content: `task ${i}` }).then((r) => r.task_id)));
    await waitFor(async () => {
      const v = await Promise.all(ids.map((id) => sys.statusOf(id)));
      return v.every((s) => s === "done" || s === "failed");
    }, 90_000, () => `6 tasks finished\n${w.raw.slice(-20).join("\n")}`);
    for (const id of ids) {
      const view = await sys.store.get(id);
      expect(view?.status, `${id}: ${view?.error}`).toBe("done");
      expect(view?.attempts).toBe(1);
      // delivered once: the heartbeat kept the waiting message invisible
      expect(w.logs("task running", id).map((l) => l.delivery)).toEqual([1]);
    }
    expect(w.logs("task is running elsewhere: message hidden until its lease ends")).toEqual([]);
    expect(requests.length).toBe(6);
    expect(maxInFlight).toBe(1);
    expect(await w.stop()).toBe(0);
  }, 120_000);
});
