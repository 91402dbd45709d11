// Nothing accepted is lost through a broker crash and a Redis crash: on a private stack (own ports,
// own Redis), the API and a worker run as child processes while the servers are killed with SIGKILL
// and started again; every task the API accepted must end `done`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
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
  /** POSTs until accepted (a 503 while a server is down is the documented answer: retry later). */
  const submit = async (content: string) => {
    for (;;) {
      const res = await fetch(`${base}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "fault", content }),
      }).catch(() => undefined);
      if (res?.status === 202) return ((await res.json()) as { task_id: string }).task_id;
      expect([503, undefined]).toContain(res?.status);
      await Bun.sleep(500);
    }
  };
  const status = async (id: string) => {
    const res = await fetch(`${base}/tasks/${id}`).catch(() => undefined);
    return res?.status === 200 ? ((await res.json()) as { status: string }).status : undefined;
  };
  const allDone = (ids: string[], ms: number) =>
    waitFor(async () => (await Promise.all(ids.map(status))).every((s) => s === "done"), ms, `${ids.length} tasks done`);
  return { api, worker, submit, status, allDone };
}

describe("faults", () => {
  test("the broker (proxy + broker JVM) crashes mid-run and comes back: every accepted task ends done", async () => {
    const sys = await startSystem();
    const before = await Promise.all([...Array(8).keys()].map((i) => sys.submit(`before ${i}`)));
    await Bun.sleep(1_000); // some are running now
    await stack.crash("proxy");
    const during = sys.submit("during the outage"); // answered 503 until the broker is back
    await stack.up();
    const after = await Promise.all([...Array(4).keys()].map((i) => sys.submit(`after ${i}`)));
    const ids = [...before, await during, ...after];
    await sys.allDone(ids, 150_000);
    expect(await sys.worker.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 300_000);

  test("Redis crashes mid-run and comes back (append-only file): every accepted task ends done", async () => {
    const sys = await startSystem();
    const ids = await Promise.all([...Array(8).keys()].map((i) => sys.submit(`redis ${i}`)));
    await Bun.sleep(2_000); // accepted writes are fsynced by then (appendfsync everysec)
    await stack.crash("redis");
    await Bun.sleep(2_000);
    await stack.up();
    await sys.allDone(ids, 150_000);
    expect(await sys.worker.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 300_000);
});
