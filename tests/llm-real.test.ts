// The whole system with a real model: `bun scripts/stack.ts up llm` (llama.cpp's OpenAI-compatible
// server with SmolLM2-135M-Instruct, built into the cache on first use: minutes), then api.ts and a
// worker against it, 20 tasks over HTTP, every one `done` with a valid profile, none failed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentResult } from "../lib/model.ts";
import { cpuFeatures } from "../scripts/stack/llm.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";

const ROOT = join(import.meta.dir, "..");
const STACK = join(ROOT, "scripts", "stack.ts");
/** A stack folder of its own: `down` there stops only this file's LLM server. */
const dir = mkdtempSync(join(tmpdir(), "llm-real-"));
let ns: TestNamespace;
let llm: { LLM_BASE_URL: string; LLM_MODEL: string };

const CONTENTS = [
  "机械键盘降价了", "Looking for a lightweight road bike under 1000 dollars", "我想买一台适合编程的笔记本电脑",
  "Any tips for growing tomatoes on a balcony?", "新出的降噪耳机值得买吗", "Best hiking boots for wet weather",
  "Which espresso machine is good for beginners?", "周末想去露营，需要买帐篷", "My cat needs a new scratching post",
  "Comparing electric toothbrushes, sonic vs rotating", "想学吉他，推荐入门款", "Is a standing desk worth it for back pain?",
  "Planning a trip to Japan in spring, cherry blossoms", "跑步鞋哪个牌子缓震好", "Need a birthday gift for a 10 year old who loves science",
  "Thinking about switching to a mirrorless camera", "家里想换扫地机器人", "Looking for vegan protein powder without soy",
  "Should I upgrade my phone this year?", "最近在看二手相机镜头",
];

async function stack(args: string[], timeoutMs: number) {
  const p = Bun.spawn(["bun", STACK, ...args, "--dir", dir], { cwd: ROOT, env: process.env, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { out, err, code };
}

beforeAll(async () => {
  ns = await createNamespace();
  const started = Date.now();
  // First run on a machine: pip builds llama-cpp-python from source (about 4 min on 2 idle cores).
  const up = await stack(["up", "llm"], 40 * 60_000);
  console.error(`[llm-real] stack.ts up llm: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  expect(up.code, `${up.out}\n${up.err}`).toBe(0);
  const env = await stack(["env"], 30_000);
  const vars = Object.fromEntries([...env.out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  expect(vars.LLM_BASE_URL, env.out).toStartWith("http://127.0.0.1:");
  llm = { LLM_BASE_URL: vars.LLM_BASE_URL!, LLM_MODEL: vars.LLM_MODEL! };
}, 45 * 60_000);

afterAll(async () => {
  await stopAll();
  const down = await stack(["down"], 60_000);
  if (down.code !== 0) console.error(`[llm-real] stack.ts down: ${down.out}\n${down.err}`);
  rmSync(dir, { recursive: true, force: true });
  await ns?.cleanup();
}, 120_000);

describe("a real model (SmolLM2-135M-Instruct on llama.cpp)", () => {
  test("20 tasks through api.ts and a worker: all done with valid profiles, none failed", async () => {
    const port = freePort();
    const env = {
      ...ns.env, ...llm, API_PORT: String(port), API_HOST: "127.0.0.1",
      LLM_MAX_CONCURRENCY: "2", MAX_ATTEMPTS: "3", RETRY_BASE_MS: "1000",
    };
    const api = new Service("api.ts", env);
    const worker = new Service("worker.ts", { ...env, LOG_LEVEL: "debug" });
    await api.waitForLog("api listening");
    await worker.waitForLog("worker running");
    expect(worker.logs("worker running")[0]!.agent).toBe("openai");

    const started = Date.now();
    const ids: string[] = [];
    for (const content of CONTENTS) {
      const r = await fetch(`http://127.0.0.1:${port}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "real-llm", content }),
      });
      expect(r.status).toBe(202);
      ids.push(((await r.json()) as { task_id: string }).task_id);
    }
    const views = new Map<string, any>();
    await waitFor(async () => {
      for (const id of ids) {
        if (views.has(id)) continue;
        const v = (await (await fetch(`http://127.0.0.1:${port}/tasks/${id}`)).json()) as any;
        if (v.status === "done" || v.status === "failed") views.set(id, v);
      }
      return views.size === ids.length;
    }, 600_000, () => `20 tasks finished (${views.size} so far)\n${worker.raw.slice(-20).join("\n")}`);
    const secs = (Date.now() - started) / 1000;

    const failed = [...views.values()].filter((v) => v.status !== "done");
    expect(failed.map((v) => `${v.task_id}: ${v.error}`)).toEqual([]);
    for (const v of views.values()) {
      expect(Value.Check(AgentResult, v.result), JSON.stringify(v.result)).toBe(true);
      expect(v.result.tags.length).toBeGreaterThanOrEqual(1);
      expect(v.result.tags.length).toBeLessThanOrEqual(5);
      expect(v.result.score).toBeGreaterThanOrEqual(0);
      expect(v.result.score).toBeLessThanOrEqual(100);
      expect(v.result.reason.length).toBeGreaterThan(0);
    }
    const attempts = [...views.values()].map((v) => v.attempts as number);
    const repairs = worker.logs("LLM answer invalid; asking the model to repair it").length;
    const fallback = worker.logs("LLM server refused the response format; using a simpler one from now on");
    const calls = worker.logs("LLM answer");
    const mean = (k: string) => (calls.reduce((a, l) => a + Number(l[k] ?? 0), 0) / Math.max(1, calls.length)).toFixed(0);
    console.error(
      `[llm-real] 20 tasks in ${secs.toFixed(1)} s; attempts ${JSON.stringify(attempts)}; repair requests ${repairs}; ` +
        `format fallbacks ${fallback.length}; ${calls.length} calls, mean ${mean("ms")} ms, ` +
        `${mean("usage_in")} prompt + ${mean("usage_out")} completion tokens; sample: ${CONTENTS[0]} -> ${JSON.stringify(views.get(ids[0]!).result)}`,
    );
    // llama-cpp-python 0.3.36 refuses json_schema (422): the agent moved to json_object + schema once.
    expect(fallback.length).toBeLessThanOrEqual(1);
    expect(await worker.stop()).toBe(0);
    expect(await api.stop()).toBe(0);
  }, 700_000);
});

// The server's build picks its instruction sets itself, never -march=native: this box's CPU advertises
// AMX and AVX-512, and the native build died of a general protection fault once it started (docs/stack.md).
test("the LLM server is built for AVX2 + FMA + F16C at most, never AMX or AVX-512, whatever the CPU advertises", () => {
  const sapphire = "flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile amx_int8 amx_bf16\n";
  expect(cpuFeatures(sapphire)).toEqual({
    name: "avx2",
    cmake: "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
  });
  expect(cpuFeatures("flags\t\t: fpu sse2 avx\n").name).toBe("generic");
  expect(cpuFeatures("flags\t\t: fpu sse2 avx\n").cmake).toContain("-DGGML_AVX2=OFF");
  expect(cpuFeatures("").name).toBe("generic");
});
