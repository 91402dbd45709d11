// README "Failures", at the worker level, with the OpenAI-compatible agent against the fake server
// (tests/support/fake-openai.ts): retries through RocketMQ's redelivery with RETRY_BASE_MS doubling,
// at least the LLM's Retry-After (an HTTP date here), a gateway's HTML 502 retried, a hung call cut
// by TASK_TIMEOUT_MS, and permanent errors (an LLM 4xx) failing at once.
// One worker serves the file: RETRY_BASE_MS=2000, MAX_ATTEMPTS=3, TASK_TIMEOUT_MS=5000.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { fakeOpenAI, httpDateIn, steps } from "./support/fake-openai.ts";
import { Service } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const llm = fakeOpenAI();
let sys: TestSystem;
let w: Service;

beforeAll(async () => {
  sys = await testSystem();
  w = new Service("worker.ts", {
    ...sys.ns.env, LLM_BASE_URL: llm.baseUrl, LLM_API_KEY: "sk-test", LLM_MODEL: "m",
    RETRY_BASE_MS: "2000", MAX_ATTEMPTS: "3", TASK_TIMEOUT_MS: "5000",
  });
  await w.waitForLog("worker running", 60_000);
}, 90_000);
afterAll(async () => {
  await w?.stop();
  await sys?.close();
  llm.stop();
}, 60_000);

const tail = () => w.raw.slice(-30).join("\n");
const retries = (id: string) => w.logs("task attempt failed; will retry", id);
/** ms between one request for `content` and the next */
const gaps = (content: string) => llm.for(content).slice(1).map((r, i) => r.at - llm.for(content)[i]!.at);

async function submit(content: string) {
  return (await sys.tasks.submit({ user_id: "retry", content })).task_id;
}

test("RETRY_BASE_MS doubles per attempt, and the broker keeps the message hidden that long", async () => {
  llm.script("double", steps.overloaded(), steps.overloaded());
  const id = await submit("double");
  await sys.waitStatus(id, "done", 90_000);
  expect(retries(id).map((l) => l.retry_in_ms), tail()).toEqual([2_000, 4_000]);
  expect((await sys.store.get(id))?.attempts).toBe(3);
  const [first, second] = gaps("double");
  expect(first).toBeGreaterThanOrEqual(2_000);
  expect(second).toBeGreaterThanOrEqual(4_000);
}, 120_000);

test("a Retry-After given as an HTTP date, longer than the backoff, sets the delay", async () => {
  llm.script("date", steps.overloaded(httpDateIn(9_000)));
  const id = await submit("date");
  await sys.waitStatus(id, "done", 90_000);
  const [retry] = retries(id);
  // second resolution, and the time between writing the date and reading it: 7 to 9 s, well over 2 s
  expect(retry?.retry_in_ms as number, tail()).toBeGreaterThanOrEqual(7_000);
  expect(retry?.retry_in_ms as number).toBeLessThanOrEqual(9_000);
  expect(gaps("date")[0]).toBeGreaterThanOrEqual(retry!.retry_in_ms as number);
}, 120_000);

test("a gateway's HTML 502 is retried, and the next attempt succeeds", async () => {
  llm.script("gateway", steps.gateway());
  const id = await submit("gateway");
  await sys.waitStatus(id, "done", 90_000);
  expect(String(retries(id)[0]?.error), tail()).toContain("502");
  expect((await sys.store.get(id))?.attempts).toBe(2);
}, 120_000);

test("a hung LLM call is cut by TASK_TIMEOUT_MS, the call itself cancelled, and retried", async () => {
  llm.script("hang", steps.hang());
  const id = await submit("hang");
  await sys.waitStatus(id, "done", 90_000);
  expect(String(retries(id)[0]?.error), tail()).toContain("timed out after 5000 ms");
  expect(llm.for("hang").map((r) => r.ended)).toEqual(["client_aborted", "answered"]);
}, 120_000);

test("an LLM 4xx is permanent: failed at once, one call, one failure result, no retry", async () => {
  llm.script("permanent", steps.badRequest());
  const id = await submit("permanent");
  await sys.waitStatus(id, "failed", 60_000);
  const view = await sys.store.get(id);
  expect(view?.attempts).toBe(1);
  expect(view?.error).toContain("PermanentAgentError");
  expect(view?.error).toContain("model_not_found");
  expect(retries(id).length).toBe(0);
  expect(llm.for("permanent").length).toBe(1);
  await w.waitForLog("task failed", 10_000, id);
  expect(await w.stop()).toBe(0);
  await sys.results.settled();
  expect(sys.results.for(id).map((r) => r.body)).toEqual([expect.objectContaining({ status: "failed", result: null, attempts: 1 })]);
}, 120_000);
