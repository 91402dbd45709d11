// A mixed fleet, both ways, with programs that behave as the original Python service did
// (tests/interop/original.py, on the real rocketmq-python-client from PyPI): its status string
// `task:{id}:status` only, its messages (no status field), its tags, its default group.
// (a) the original's API sends tasks; our worker runs them; our GET and the status string say done.
// (b) our API sends tasks; the original's worker runs them; our GET says running, then done.
// (c) scripts/load.ts measures the original alone (its API answers 200; its results carry no status).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { createApp } from "../lib/http/app.ts";
import { silentLogger } from "../lib/log.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { PythonProgram, pythonWithPackages } from "./support/python.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
let app: ReturnType<typeof createApp>;
let python: string;
const home = mkdtempSync(join(tmpdir(), "mixed-fleet-"));
const programs: PythonProgram[] = [];

beforeAll(async () => {
  const venv = pythonWithPackages();
  sys = await testSystem();
  app = createApp({ cfg: sys.ns.config, store: sys.store, tasks: sys.tasks, log: silentLogger });
  python = await venv;
}, 600_000); // the first run installs the venv / resolves the jars (minutes on a slow registry)
afterAll(async () => {
  await Promise.all(programs.map((p) => p.stop()));
  await stopAll();
  await sys?.close();
  rmSync(home, { recursive: true, force: true });
}, 60_000);

const original = (args: string[], env: Record<string, string> = {}) => {
  const p = new PythonProgram(python, "original.py", args, { ...sys.ns.env, ...env }, home);
  programs.push(p);
  return p;
};

async function ourGet(id: string) {
  const res = await app.handle(new Request(`http://local/tasks/${id}`));
  return { status: res.status, body: (await res.json()) as { status?: string; error?: string } };
}

test("defaults: our workers' group is the original's (GID_AGENT_PYTHON), so a mixed fleet is one group", async () => {
  expect(parseConfig({}).MQ_GROUP_AGENT).toBe("GID_AGENT_PYTHON");
  const env: Record<string, string> = { ...sys.ns.env, PYTHONPATH: join(import.meta.dir, "interop") };
  delete env.MQ_GROUP_AGENT;
  const p = Bun.spawnSync([python, "-c", "import original; print(original.GROUP)"], { env: { ...env, HOME: home } });
  expect(p.stdout.toString().trim()).toBe("GID_AGENT_PYTHON");
});

describe("(a) the original's producer, our worker", () => {
  test("tasks it sent (status string 'queued', its message) run on our worker: our GET and the status string say done", async () => {
    const producer = original(["produce", "3"]);
    expect(await producer.proc.exited).toBe(0);
    const ids = producer.lines.map((l) => l.task_id as string);
    expect(ids).toHaveLength(3);
    // Before any worker: our GET answers from the original's status string.
    for (const id of ids) expect(await ourGet(id)).toEqual({ status: 200, body: { task_id: id, status: "queued", result: null, attempts: 0 } as never });

    const worker = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "200" });
    for (const id of ids)
      await waitFor(async () => (await ourGet(id)).body.status === "done", 60_000, () => `task ${id} done\n${worker.raw.slice(-20).join("\n")}`);
    for (const id of ids) {
      const { body } = await ourGet(id);
      expect(body).toMatchObject({ task_id: id, status: "done", attempts: 1, result: { score: expect.any(Number) } });
      expect(await sys.redis.get(sys.store.keys.legacyStatus(id))).toBe("done");
      expect(await sys.redis.ttl(sys.store.keys.legacyStatus(id))).toBeGreaterThan(0);
    }
    await waitFor(() => ids.every((id) => sys.results.for(id).length > 0), 30_000, "our result messages");
    for (const id of ids) expect(sys.results.for(id)[0]).toMatchObject({ tag: "ProfileResult", key: id, body: { task_id: id, status: "done" } });
    expect(await worker.stop()).toBe(0);
  }, 120_000);
});

describe("(b) our API, the original's worker", () => {
  test("our GET reports what that worker wrote: running, then done; its result message (no status) is on the result topic", async () => {
    const worker = original(["work"], { AGENT_DELAY_MS: "3000" });
    await waitFor(() => worker.lines.some((l) => l.event === "ready"), 60_000, () => `the original's worker ready\n${worker.tail()}`);

    const res = await app.handle(
      new Request("http://local/tasks", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "mixed-b", content: "机械键盘降价了" }),
      }),
    );
    expect(res.status).toBe(202);
    const { task_id: id } = (await res.json()) as { task_id: string };

    await waitFor(async () => (await ourGet(id)).body.status === "running", 60_000, () => `GET to say running\n${worker.tail()}`);
    await waitFor(async () => (await ourGet(id)).body.status === "done", 60_000, () => `GET to say done\n${worker.tail()}`);
    expect(worker.lines.filter((l) => l.task_id === id).map((l) => l.event)).toEqual(["running", "done"]);

    await waitFor(() => sys.results.for(id).length > 0, 30_000, "the original's result message");
    const [msg] = sys.results.for(id);
    expect(msg!.tag).toBe("ProfileResult");
    expect(msg!.key).toBe(id);
    expect(msg!.body).toEqual({ task_id: id, user_id: "mixed-b", result: { tags: ["键盘", "python"], score: 7, reason: expect.any(String) } });
    expect(await worker.stop()).toBe(0);
  }, 120_000);
});

describe("(c) load.ts measures the original", () => {
  test("the original's API and worker: every task accepted (200), done (results without status), GET agrees", async () => {
    const port = freePort();
    const api = original(["serve", String(port)]);
    const worker = original(["work"], { AGENT_DELAY_MS: "50" });
    await waitFor(() => api.lines.some((l) => l.event === "listening"), 60_000, () => `the original's API\n${api.tail()}`);
    await waitFor(() => worker.lines.some((l) => l.event === "ready"), 60_000, () => `the original's worker\n${worker.tail()}`);
    // The README's command, small.
    const proc = Bun.spawn(
      ["bun", join(import.meta.dir, "..", "scripts", "load.ts"), "--api", `http://127.0.0.1:${port}`, "--tasks", "20", "--concurrency", "4", "--timeout", "60", "--verify", "5", "--json"],
      { env: sys.ns.env, stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.error(out, err, worker.tail());
    const summary = JSON.parse(out.trim()) as Record<string, any>;
    expect(summary).toMatchObject({ tasks: 20, accepted: 20, rejected: {}, done: 20, failed: 0, lost: 0 });
    expect(summary.verify).toMatchObject({ checked: 5, agreed: 5, problems: [] });
    expect(code).toBe(0);
  }, 180_000);
});
