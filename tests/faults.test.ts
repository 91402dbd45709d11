// Nothing accepted is lost through a broker crash and a Redis crash: on a private stack (own ports,
// own Redis), the API and a worker run as child processes while the servers are killed with SIGKILL
// (with tasks running) and started again; while a server is down a POST answers 503 with Retry-After
// (README: "POSTs answer 503 meanwhile"); every task the API accepted must end `done`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "redis";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { privateStack } from "./support/private-stack.ts";

let stack: Awaited<ReturnType<typeof privateStack>>;
let ns: TestNamespace;

beforeAll(async () => {
  stack = await privateStack();
  await stack.up();
  ns = await createNamespace({ env: stack.endpoints });
}, 180_000);

afterAll(async () => {
  await stopAll();
  await ns?.cleanup().catch(() => {});
  await stack?.destroy();
}, 180_000);

async function startSystem() {
  const port = freePort();
  const env = { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", AGENT_DELAY_MS: "2000", MQ_INVISIBLE_MS: "10000" };
  const api = new Service("api.ts", env);
  const worker = new Service("worker.ts", env);
  await api.waitForLog("api listening");
  await worker.waitForLog("worker running", 60_000);
  const base = `http://127.0.0.1:${port}`;
  const post = (content: string) =>
    fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "fault", content }) });
  /** With every server up: accepted at once. */
  const submit = async (content: string) => {
    const res = await post(content);
    expect(res.status).toBe(202);
    return ((await res.json()) as { task_id: string }).task_id;
  };
  /** While `error`'s server is down: a 503 with Retry-After and that error code, never anything else. */
  const refused = async (error: "rocketmq_unavailable" | "redis_unavailable") => {
    const res = await post("while down");
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await res.json()) as { error: string }).error).toBe(error);
  };
  /** After a restart: 503 until the API's clients are back, then 202; nothing else is acceptable. */
  const submitWhenBack = async (content: string) => {
    for (;;) {
      const res = await post(content);
      if (res.status === 202) return ((await res.json()) as { task_id: string }).task_id;
      expect(res.status).toBe(503);
      await Bun.sleep(500);
    }
  };
  const status = async (id: string) => {
    const res = await fetch(`${base}/tasks/${id}`).catch(() => undefined);
    return res?.status === 200 ? ((await res.json()) as { status: string }).status : undefined;
  };
  const allDone = (ids: string[], ms: number) =>
    waitFor(async () => (await Promise.all(ids.map(status))).every((s) => s === "done"), ms, `${ids.length} tasks done`);
  /** Waits until some of `ids` run, and returns which. */
  const running = async (ids: string[]) => {
    let now: string[] = [];
    await waitFor(async () => {
      const all = await Promise.all(ids.map(status));
      now = ids.filter((_, i) => all[i] === "running");
      return now.length > 0;
    }, 60_000, "a task to be running");
    return now;
  };
  return { api, worker, submit, refused, submitWhenBack, status, allDone, running };
}

/**
 * Every write made so far is on disk: a BGREWRITEAOF has completed (its new base file is fsynced
 * before it replaces the old one). The stack runs appendfsync everysec; this is the positive event
 * instead of a sleep guessing that a second has passed.
 */
async function onDisk() {
  const c = createClient({ url: stack.endpoints.REDIS_URL });
  c.on("error", () => {});
  await c.connect();
  try {
    const info = async () => Object.fromEntries(String(await c.info("persistence")).split("\r\n").map((l) => l.split(":")));
    const rewrites = Number((await info()).aof_rewrites);
    await c.sendCommand(["BGREWRITEAOF"]);
    await waitFor(async () => {
      const i = await info();
      return Number(i.aof_rewrites) > rewrites && i.aof_rewrite_in_progress === "0" && i.aof_rewrite_scheduled === "0";
    }, 30_000, "BGREWRITEAOF to complete");
    expect((await info()).aof_last_bgrewrite_status).toBe("ok");
  } finally {
    await c.quit().catch(() => {});
  }
}

describe("faults", () => {
  test("the broker (proxy + broker JVM) crashes mid-run and comes back: every accepted task ends done", async () => {
    const sys = await startSystem();
    const before = await Promise.all([...Array(8).keys()].map((i) => sys.submit(`before ${i}`)));
    const inFlight = await sys.running(before);
    await stack.crash("proxy");
    expect(inFlight.length).toBeGreaterThan(0); // the crash hit running work
    await sys.refused("rocketmq_unavailable");
    await stack.up();
    const after = await Promise.all([...Array(4).keys()].map((i) => sys.submitWhenBack(`after ${i}`)));
    const ids = [...before, ...after];
    await sys.allDone(ids, 150_000);
    expect(await sys.worker.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 300_000);

  test("Redis crashes mid-run and comes back (append-only file): every accepted task ends done", async () => {
    const sys = await startSystem();
    const ids = await Promise.all([...Array(8).keys()].map((i) => sys.submit(`redis ${i}`)));
    expect((await sys.running(ids)).length).toBeGreaterThan(0);
    await onDisk(); // what was accepted is in the append-only file, whatever appendfsync's timing
    await stack.crash("redis");
    await sys.refused("redis_unavailable");
    await stack.up();
    ids.push(await sys.submitWhenBack("after redis came back"));
    await sys.allDone(ids, 150_000);
    expect(await sys.worker.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 300_000);
});
