// The OpenAPI document tells the truth: schemathesis (pinned in tests/interop/requirements.txt,
// installed by the test into a cached venv) generates requests from /docs/json against a real API
// process with real Redis and RocketMQ, and runs every check it has (`--checks all`: status codes,
// content types, headers and bodies as documented, negative data rejected, valid data accepted,
// 405 + Allow for undeclared methods, links followed from POST to GET, no 5xx).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { pythonWithPackages } from "./support/python.ts";

const MIN_CASES = 1000;

let ns: TestNamespace;
let base: string;
let python: string;
const work = mkdtempSync(join(tmpdir(), "schemathesis-"));

beforeAll(async () => {
  const venv = pythonWithPackages();
  ns = await createNamespace();
  const port = freePort();
  // WARN: one log line per generated request would be thousands of lines.
  const api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", LOG_LEVEL: "warn" });
  // A worker finishes the tasks the stateful phase creates (no agent delay), so a generated
  // `GET /tasks/{id}?wait=60` answers once the task is done, as a client's would, instead of
  // running into the 10 s request timeout on a task nobody runs.
  new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "0", LOG_LEVEL: "warn" });
  base = `http://127.0.0.1:${port}`;
  python = await venv;
  await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 60_000, () => `api ready\n${api.raw.slice(-20).join("\n")}`);
}, 600_000); // the first run installs the venv / resolves the jars (minutes on a slow registry)
afterAll(async () => {
  await stopAll();
  await ns?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

test(`schemathesis run --checks all: >= ${MIN_CASES} generated cases, 0 failures`, async () => {
  const report = join(work, "report.json");
  const proc = Bun.spawn(
    [
      python, "-m", "schemathesis.cli", "--config-file", join(import.meta.dir, "interop", "schemathesis.toml"),
      "run", `${base}/docs/json`, // examples per phase: in schemathesis.toml
      "--checks", "all",
      "--generation-database", "none",
      "--request-timeout", "10",
      "--workers", "2",
      "--report", "json", "--report-json-path", report,
      "--no-color",
      // To replay a run: SCHEMATHESIS_SEED=<the seed it printed> bun test tests/schemathesis.test.ts
      ...(process.env.SCHEMATHESIS_SEED ? ["--seed", process.env.SCHEMATHESIS_SEED] : []),
    ],
    // The one hooks module: ast.parse one thread at a time (tests/interop/ast_lock.py: a CPython 3.11 race
    // between the two workers' threads ended about one run in four with a Runtime Error, not a finding).
    { cwd: work, stdout: "pipe", stderr: "pipe", env: { ...process.env, SCHEMATHESIS_HOOKS: "ast_lock", PYTHONPATH: join(import.meta.dir, "interop") } },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const text = `${out}\n${err}`;
  const doc = JSON.parse(readFileSync(report, "utf8")) as {
    seed: number;
    exit_code: number;
    test_cases: { generated: number; with_failures: number; errored: number };
    failures: unknown[];
    errors: unknown[];
    operations: { tested: number };
  };
  console.error(
    `[schemathesis] seed ${/Seed: (\d+)/.exec(out)?.[1] ?? doc.seed}: ${doc.test_cases.generated} cases on ${doc.operations.tested} operations, ` +
      `${doc.test_cases.with_failures} with failures, ${doc.failures.length} failure kinds, ${doc.errors.length} errors`,
  );
  // The phases' table (cases and time per phase), for the log.
  console.error(out.split("\n").filter((l) => l.trim()).slice(0, 24).join("\n"));
  // Long generated bodies (thousands of one character) are shortened so the failure itself shows.
  if (code !== 0 || doc.failures.length || doc.errors.length)
    console.error(text.replace(/(.)\1{40,}/g, (run, c: string) => `${c.repeat(8)}…(${run.length} × ${JSON.stringify(c)})`).slice(-30_000));
  expect(doc.failures).toEqual([]);
  expect(doc.errors).toEqual([]);
  // Every operation the document lists was tested (routes added by later work count themselves).
  const paths = ((await (await fetch(`${base}/docs/json`)).json()) as { paths: Record<string, object> }).paths;
  expect(doc.operations.tested).toBe(Object.values(paths).reduce((n, ops) => n + Object.keys(ops).length, 0));
  expect(doc.test_cases.generated).toBeGreaterThanOrEqual(MIN_CASES);
  expect(code).toBe(0);
}, 900_000);
