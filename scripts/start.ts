// `npm start` (or `bun scripts/start.ts`): the whole system on this machine, in the foreground.
// Brings up Redis and RocketMQ (scripts/stack.ts up), provisions topics and the group, then runs the
// API and WORKERS (default 1) worker processes until Ctrl-C, which stops them cleanly. The servers
// keep running afterwards (`bun scripts/stack.ts down` stops them).
// LLM=local: the stack's local LLM too (`stack.ts up --llm`, llama.cpp + SmolLM2-135M, built once),
// and the workers run the OpenAI-compatible agent against it instead of the demo agent.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const workers = Number(process.env.WORKERS ?? "1");

function step(args: string[], what: string) {
  const p = Bun.spawnSync(["bun", ...args], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: process.env });
  if (p.exitCode !== 0) {
    console.error(`start: ${what} failed (exit ${p.exitCode}); nothing else was started`);
    process.exit(p.exitCode ?? 1);
  }
}

const localLlm = process.env.LLM === "local";
if (process.env.LLM && !localLlm) {
  console.error(`start: LLM=${JSON.stringify(process.env.LLM)}: the one value is "local" (or set LLM_BASE_URL yourself)`);
  process.exit(2);
}
step([join(ROOT, "scripts/stack.ts"), "up", ...(localLlm ? ["--llm"] : [])], localLlm ? "bringing up Redis, RocketMQ and the LLM" : "bringing up Redis and RocketMQ");
if (localLlm) useLocalLlm();
step([join(ROOT, "scripts/provision.ts")], "provisioning");

/** LLM_BASE_URL and LLM_MODEL from `stack.ts env` for the API and workers (no key: a local server). */
function useLocalLlm() {
  const p = Bun.spawnSync(["bun", join(ROOT, "scripts/stack.ts"), "env"], { cwd: ROOT, env: process.env, stderr: "inherit" });
  for (const m of p.stdout.toString().matchAll(/^export (LLM_BASE_URL|LLM_MODEL)=(.*)$/gm)) process.env[m[1]!] = m[2]!;
  if (p.exitCode !== 0 || !process.env.LLM_BASE_URL) {
    console.error("start: the local LLM is not answering after `stack.ts up --llm` (see `bun scripts/stack.ts logs llm`)");
    process.exit(1);
  }
  // The server answers one request at a time; more calls in flight only queue inside it (docs/performance.md).
  process.env.LLM_MAX_CONCURRENCY ??= "2";
  console.error(`start: agent: ${process.env.LLM_MODEL} at ${process.env.LLM_BASE_URL} (LLM_MAX_CONCURRENCY=${process.env.LLM_MAX_CONCURRENCY})`);
}

// Each child in its own process group: Ctrl-C then reaches only this process, which passes it on
// once (a terminal's SIGINT plus npm's copy of it would otherwise count as a second, forcing signal).
const run = (entry: string) =>
  spawn("bun", [join(ROOT, entry)], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: process.env, detached: true });
const children: ChildProcess[] = [run("api.ts"), ...Array.from({ length: workers }, () => run("worker.ts"))];
const port = process.env.API_PORT ?? "8000";
console.error(
  `\nstart: API on http://127.0.0.1:${port} (docs /docs), ${workers} worker(s). Try:\n` +
    `  curl -X POST localhost:${port}/tasks -H 'content-type: application/json' -d '{"user_id":"user123","content":"机械键盘降价了"}'\n` +
    `  curl localhost:${port}/tasks/<task_id>\n` +
    `Ctrl-C stops the API and workers; 'bun scripts/stack.ts down' stops Redis and RocketMQ.\n`,
);

let stopping = false;
let forwardedAt = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.on(sig, () => {
    // Copies of one Ctrl-C arrive together; a signal a second or more later is a real second one,
    // and is passed on too: the children then force their own exit.
    if (Date.now() - forwardedAt < 1_000) return;
    forwardedAt = Date.now();
    stopping = true;
    for (const c of children) c.kill(sig);
  });

const codes = await Promise.all(
  children.map((c) => new Promise<number>((resolve) => c.once("exit", (code) => resolve(code ?? 1)))),
);
if (!stopping) console.error(`start: a process exited on its own (codes ${codes.join(", ")})`);
process.exit(codes.every((c) => c === 0) ? 0 : 1);
