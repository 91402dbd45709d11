// Fleet-wide LLM budgets (lib/tenancy/llm-budget.ts): the turns handed out by Redis, then 4 workers
// against a fake OpenAI-compatible server that answers 429 above its limit. With a budget below
// that limit the fleet gets no 429 at all, and its throughput is within 10 % of the budget.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { send, type Redis } from "../lib/scripts.ts";
import { estimateTokens, LlmBudget } from "../lib/tenancy/llm-budget.ts";
import { runTenancyScript } from "../lib/tenancy/scripts.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

describe("turns handed out by Redis", () => {
  let ns: TestNamespace;
  let redis: Redis;
  beforeAll(async () => {
    ns = await createNamespace();
    redis = createRedis(ns.config, silentLogger);
    await connectRedis(redis);
  });
  afterAll(async () => {
    await closeRedis(redis);
    await ns.cleanup();
  });

  /** The planned start (Redis clock, ms) of each of `n` calls reserved back to back. */
  async function starts(budget: LlmBudget, model: string, tokens: number, n: number) {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const [wait, now] = (await runTenancyScript(redis, "llm-reserve", [budget.keys.llmBudget(model)], ["reserve", budget.rpm, budget.tpm, tokens])) as number[];
      out.push(wait! + now!);
    }
    return out.slice(1).map((s, i) => s - out[i]!);
  }

  test("RPM: one turn every 60000/rpm ms, whatever the pace of the callers", async () => {
    const gaps = await starts(new LlmBudget(redis, ns.redisPrefix, 600, 0), "m-rpm", 500, 20);
    for (const g of gaps) expect(Math.abs(g - 100)).toBeLessThanOrEqual(1);
  });

  test("TPM: a turn's length follows its tokens, and the real usage corrects it", async () => {
    const budget = new LlmBudget(redis, ns.redisPrefix, 0, 60_000); // 1 ms a token
    for (const g of await starts(budget, "m-tpm", 250, 5)) expect(Math.abs(g - 250)).toBeLessThanOrEqual(1);
    await budget.adjust("m-tpm", 500); // the last call used 500 tokens more than reserved
    const [a, b] = [await budget.reserve("m-tpm", 10), await budget.reserve("m-tpm", 10)];
    expect(a).toBeGreaterThan(1_000); // four turns of 250 after "now", plus the 500 of the correction
    expect(Math.abs(b - a - 10)).toBeLessThanOrEqual(2);
  });

  test("both budgets: the later of the two timelines decides", async () => {
    const budget = new LlmBudget(redis, ns.redisPrefix, 600, 60_000);
    for (const g of await starts(budget, "m-both", 300, 5)) expect(Math.abs(g - 300)).toBeLessThanOrEqual(1);
    for (const g of await starts(budget, "m-both2", 20, 5)) expect(Math.abs(g - 100)).toBeLessThanOrEqual(1);
  });

  test("the state lives until a minute past the later timeline, so a call far over the budget is not forgotten while ahead", async () => {
    const budget = new LlmBudget(redis, ns.redisPrefix, 600, 60_000); // 1 ms a token
    const key = budget.keys.llmBudget("m-long");
    const pttl = () => send<number>(redis, key, ["PTTL", key]);
    // One call estimated at twice the minute's tokens: the token timeline is 120 s ahead.
    expect(await budget.reserve("m-long", 120_000)).toBe(0);
    expect(await pttl()).toBeGreaterThan(120_000 + 60_000 - 1_000);
    expect(await budget.reserve("m-long", 10)).toBeGreaterThan(119_000); // still waits its turn
    // The real usage moves the token timeline further ahead: the state's life follows it.
    await budget.adjust("m-long", 240_000);
    expect(await pttl()).toBeGreaterThan(360_000 + 60_000 - 2_000);
  });

  test("the estimate counts the request and the answer allowance", () => {
    expect(estimateTokens(JSON.stringify({ messages: [] }))).toBe(Math.ceil(15 / 3) + 256);
    expect(estimateTokens(JSON.stringify({ max_tokens: 50 }))).toBe(Math.ceil(16 / 3) + 50);
  });
});

describe("4 workers against a rate-limited fake LLM", () => {
  // Modest numbers, so a busy CI box's workers still have capacity above the budget: what is measured
  // is the budget, not the machine.
  const BUDGET_PER_S = 6; // LLM_RPM=360
  // The fake server's limit: 45 requests in any sliding 5 s (9/s). A provider counts over a window
  // too (a minute, for RPM); 5 s keeps the test short while a stall of this busy box's scheduler
  // (hundreds of ms, measured) cannot crowd the window.
  const LIMIT = 45;
  const WINDOW_MS = 5_000;
  const TASKS = 120;
  const accepted: number[] = [];
  let refused = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      await req.json();
      const now = performance.now();
      while (accepted.length && accepted[0]! <= now - WINDOW_MS) accepted.shift();
      if (accepted.length >= LIMIT) {
        refused++;
        return Response.json({ error: { message: "rate limit" } }, { status: 429, headers: { "retry-after": "1" } });
      }
      accepted.push(now);
      all.push(now);
      const content = JSON.stringify({ tags: ["t"], score: 1, reason: "r" });
      return Response.json({ choices: [{ message: { role: "assistant", content } }], usage: { total_tokens: 100 } });
    },
  });
  const all: number[] = [];
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await testSystem();
  });
  afterAll(async () => {
    await sys?.close();
    server.stop(true);
  }, 90_000);

  test(`budget ${BUDGET_PER_S}/s below the server's ${LIMIT} per ${WINDOW_MS / 1000} s: no 429, throughput within 10 % of the budget`, async () => {
    const env = {
      ...sys.ns.env,
      LLM_BASE_URL: `http://127.0.0.1:${server.port}/v1`,
      LLM_API_KEY: "sk-test",
      LLM_RPM: String(BUDGET_PER_S * 60),
      // Room for every task at once: all turns are taken up front, so the budget, not a busy box, sets the pace.
      WORKER_CONCURRENCY: "64",
    };
    // The backlog first, then the workers: each receive returns a full batch, so the fleet asks for
    // turns faster than the budget grants them, and what is measured is the budget.
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) ids.push((await sys.tasks.submit({ user_id: "u", content: `task ${i}` })).task_id);
    const workers = Array.from({ length: 4 }, () => new Service("worker.ts", env));
    await Promise.all(workers.map((w) => w.waitForLog("worker running", 60_000)));
    await waitFor(() => new Set(sys.results.received.map((r) => r.key)).size >= TASKS, 120_000, () => `all ${TASKS} tasks to finish (${all.length} calls answered, ${refused} refused)`);
    const statuses = await Promise.all(ids.map((id) => sys.store.get(id)));
    const perSecond = ((all.length - 1) * 1000) / (all.at(-1)! - all[0]!);
    const mid = all.slice(Math.floor(all.length * 0.2), Math.ceil(all.length * 0.8));
    const midRate = ((mid.length - 1) * 1000) / (mid.at(-1)! - mid[0]!);
    const claims = workers.flatMap((w) => w.logs("task running")).map((l) => Date.parse(String(l.time))).sort((a, b) => a - b);
    console.error(`[llm-budget] ${claims.length} claims logged, within ${((claims.at(-1)! - claims[0]!) / 1000).toFixed(1)} s`);
    console.error(`[llm-budget] middle 60 % of the calls: ${midRate.toFixed(2)}/s`);
    console.error(`[llm-budget] ${all.length} calls, ${refused} refused (429), ${perSecond.toFixed(2)}/s for a budget of ${BUDGET_PER_S}/s`);
    expect(refused).toBe(0);
    expect(statuses.every((s) => s?.status === "done" && s.attempts === 1)).toBe(true);
    expect(Math.abs(perSecond - BUDGET_PER_S) / BUDGET_PER_S).toBeLessThanOrEqual(0.1);
    await Promise.all(workers.map((w) => w.stop()));
  }, 240_000);
});
