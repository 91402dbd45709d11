// The load generator (scripts/load.ts) run as users run it, small: against an api.ts and a worker.ts on a
// test namespace (http mode), and against RocketMQ alone (mq mode). Checks the JSON summary and that
// nothing is lost; the figures themselves are for docs/performance.md, not for assertions.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";

const ROOT = join(import.meta.dir, "..");
let ns: TestNamespace;

beforeAll(async () => {
  ns = await createNamespace();
});

afterEach(async () => {
  expect(await stopAll()).toBe(0);
});

afterAll(async () => {
  await stopAll();
  await ns?.cleanup();
});

async function load(args: string[], env: Record<string, string>) {
  const proc = Bun.spawn(["bun", join(ROOT, "scripts", "load.ts"), ...args, "--json"], {
    cwd: ROOT,
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const lines = stdout.trim().split("\n");
  expect(lines.length, `stdout must hold one JSON line; stderr:\n${stderr}`).toBe(1);
  return { summary: JSON.parse(lines[0]!) as Record<string, any>, code, stderr };
}

function expectShape(s: Record<string, any>) {
  for (const k of ["tasks", "accepted", "done", "failed", "lost", "submit_per_s", "done_per_s", "wall_s"])
    expect(typeof s[k], k).toBe("number");
  for (const k of ["submit_ms", "e2e_ms"])
    for (const p of ["p50", "p95", "p99", "max"]) expect(typeof s[k][p], `${k}.${p}`).toBe("number");
  expect(s.e2e_ms.p50).toBeLessThanOrEqual(s.e2e_ms.p99);
  expect(s.e2e_ms.p99).toBeLessThanOrEqual(s.e2e_ms.max);
}

describe("scripts/load.ts", () => {
  test("http mode: 30 tasks through api.ts and worker.ts, all done, none lost, a sample checked over GET", async () => {
    const port = freePort();
    const env = { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", AGENT_DELAY_MS: "0" };
    const api = new Service("api.ts", env);
    const worker = new Service("worker.ts", env);
    await api.waitForLog("api listening");
    await worker.waitForLog("worker running");
    const { summary: s, code, stderr } = await load(["--tasks", "30", "--concurrency", "8", "--timeout", "30"], env);
    expect(code, stderr).toBe(0);
    expectShape(s);
    expect(s.mode).toBe("http");
    expect(s.tasks).toBe(30);
    expect(s.accepted).toBe(30);
    expect(s.done).toBe(30);
    expect(s.failed).toBe(0);
    expect(s.lost).toBe(0);
    expect(s.verify).toEqual({ checked: 20, agreed: 20, problems: [] });
    // The run's own group on the result topic is gone again.
    expect(await groupExists(s.settings.result_group)).toBe(false);
    await Promise.all([api.stop(), worker.stop()]);
  }, 60_000);

  test("mq mode: 50 messages through a temporary topic, all received, topic and group removed", async () => {
    const { summary: s, code, stderr } = await load(["--mode", "mq", "--tasks", "50", "--concurrency", "8", "--queues", "4", "--timeout", "30"], ns.env);
    expect(code, stderr).toBe(0);
    expectShape(s);
    expect(s.mode).toBe("mq");
    expect(s.done).toBe(50);
    expect(s.lost).toBe(0);
    expect(s.settings.queue_spread.reduce((a: number, b: number) => a + b, 0)).toBe(50);
    expect(await ns.admin().topicRoute(s.settings.topic)).toBeNull();
    expect(await groupExists(s.settings.group)).toBe(false);
  }, 60_000);

  test("bad options exit 2 with a message naming the option", async () => {
    const proc = Bun.spawn(["bun", join(ROOT, "scripts", "load.ts"), "--tasks", "zero"], { cwd: ROOT, env: ns.env, stderr: "pipe", stdout: "pipe" });
    const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(err).toContain("--tasks");
  });
});

async function groupExists(group: string): Promise<boolean> {
  const admin = ns.admin();
  for (const b of await admin.brokers()) if (await admin.getGroupConfig(b.master, group)) return true;
  return false;
}
