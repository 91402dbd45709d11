// Usage per task: the worker sums the LLM calls of every attempt (tokens as the service reported
// them, time in calls, calls, attempts) into the task's record; GET /tasks/:id shows it as `usage`
// and the result message carries it as an added field. Against the fake OpenAI-compatible server:
// the first attempt's answer is invalid (no repair allowed, so the attempt fails and is retried), the
// second is good: two calls over two attempts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { createApp } from "../lib/http/app.ts";
import { silentLogger } from "../lib/log.ts";
import { TaskView } from "../lib/model.ts";
import { fakeOpenAI, steps } from "./support/fake-openai.ts";
import { Service, stopAll, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const llm = fakeOpenAI();
let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem();
}, 60_000);
afterAll(async () => {
  await stopAll();
  await sys?.close();
  llm.stop();
}, 60_000);

test("usage is summed over attempts, in GET /tasks/:id and in the result message; the demo agent has none", async () => {
  const content = "usage over two attempts";
  llm.script(content, steps.answer("not json at all"), steps.answer());
  const w = new Service("worker.ts", {
    ...sys.ns.env, LLM_BASE_URL: llm.baseUrl, LLM_API_KEY: "sk-test", LLM_MODEL: "usage-model", LLM_REPAIR_TRIES: "0", RETRY_BASE_MS: "1000",
  });
  const { task_id } = await sys.tasks.submit({ user_id: "u", content });
  await sys.waitStatus(task_id, "done", 90_000);

  const app = createApp({ cfg: sys.ns.config, store: sys.store, tasks: sys.tasks, log: silentLogger });
  const res = await app.handle(new Request(`http://localhost/tasks/${task_id}`));
  expect(res.status).toBe(200);
  const view = (await res.json()) as TaskView;
  expect(Value.Check(TaskView, view)).toBe(true);
  expect(view.attempts).toBe(2);
  expect(view.usage).toMatchObject({ model: "usage-model", calls: 2, attempts: 2 });
  // What the fake reported, call by call (its usage is derived from each request's messages and answer).
  expect(llm.for(content)).toHaveLength(2);
  expect(view.usage!.prompt_tokens).toBeGreaterThan(0);
  expect(view.usage!.completion_tokens).toBeGreaterThan(0);
  expect(view.usage!.llm_ms).toBeGreaterThanOrEqual(0);

  await waitFor(() => sys.results.for(task_id).length > 0, 30_000, "the result message");
  expect(sys.results.for(task_id)[0]!.body).toMatchObject({ status: "done", attempts: 2, usage: view.usage });
  expect(await w.stop()).toBe(0);

  // The demo agent makes no LLM call: no usage field at all.
  const demo = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "0" });
  const { task_id: plain } = await sys.tasks.submit({ user_id: "u", content: "no llm" });
  await sys.waitStatus(plain, "done", 60_000);
  expect((await sys.store.get(plain))!.usage).toBeUndefined();
  expect(await demo.stop()).toBe(0);
}, 180_000);
