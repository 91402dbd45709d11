// The API and the worker as users run them (`bun api.ts`, `bun worker.ts`), stopped by a signal
// before they are up: their start-up waits on Redis and RocketMQ (the producer's start alone, up to
// 3 × MQ_REQUEST_TIMEOUT_MS = 9 s when the endpoint hangs), and a SIGTERM meanwhile (a deploy,
// `docker compose stop`) must get the same clean shutdown as later: exit 0, never the default kill by
// the signal, and no start-up going on beside the shutdown. (worker.test.ts › the process exits after
// SIGINT even when RocketMQ was never reachable: a signal once the worker's loop retries its start.)
import { afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { API_SHUTDOWN_DEADLINE_MS } from "../lib/shutdown.ts";
import { parseConfig } from "../lib/config.ts";
import { workerShutdownBudgetMs } from "../lib/worker/loop.ts";
import { testEnv } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { blackHole } from "./support/tcp-proxy.ts";

afterEach(async () => {
  // A test that leaves an API running fails here, and the API is stopped.
  expect(await stopAll()).toBe(0);
});

test("SIGTERM while the RocketMQ producer is still starting: the shutdown runs and the process exits 0, never serving", async () => {
  // An endpoint that accepts and never answers (a hung proxy): the start waits out its timeouts. A
  // closed port (127.0.0.1:1) is refused within ~3 s, a shorter window with nothing to show we are in it.
  const hole = await blackHole();
  try {
    const api = new Service("api.ts", {
      ...testEnv(),
      REDIS_PREFIX: `test:${randomBytes(4).toString("hex")}:`,
      MQ_ENDPOINT: `127.0.0.1:${hole.port}`,
      API_HOST: "127.0.0.1",
      API_PORT: String(freePort()),
    });
    // Connected to the endpoint: Redis is done, the producer's start is under way.
    await waitFor(() => hole.accepted() > 0, 30_000, () => `the API to connect to RocketMQ\n${api.raw.slice(-20).join("\n")}`);
    const signalledAt = Date.now();
    api.signal("SIGTERM");
    // Before the fix: killed by the signal (143), no cleanup at all.
    expect(await api.exited).toBe(0);
    expect(api.proc.signalCode).toBeNull();
    expect(Date.now() - signalledAt).toBeLessThan(API_SHUTDOWN_DEADLINE_MS); // not forced at the deadline (which exits 1)
    expect(api.logs("shutting down").length).toBe(1);
    expect(api.logs("shutdown complete").length).toBe(1);
    expect(api.logs("cleanup failed")).toEqual([]);
    expect(api.logs("api listening")).toEqual([]); // start-up went no further once the signal came
    expect(api.raw.filter((l) => l.includes("api failed to start"))).toEqual([]);
  } finally {
    hole.close();
  }
}, 60_000);

test("SIGTERM while the worker's RocketMQ producer is still starting: the shutdown runs and the process exits 0, its loops never started", async () => {
  const hole = await blackHole();
  try {
    const env = { ...testEnv(), REDIS_PREFIX: `test:${randomBytes(4).toString("hex")}:`, MQ_ENDPOINT: `127.0.0.1:${hole.port}` };
    const worker = new Service("worker.ts", env);
    await waitFor(() => hole.accepted() > 0, 30_000, () => `the worker to connect to RocketMQ\n${worker.raw.slice(-20).join("\n")}`);
    const signalledAt = Date.now();
    worker.signal("SIGTERM");
    expect(await worker.exited).toBe(0);
    expect(worker.proc.signalCode).toBeNull();
    expect(Date.now() - signalledAt).toBeLessThan(workerShutdownBudgetMs(parseConfig(env))); // not forced at the deadline
    expect(worker.logs("shutdown complete").length).toBe(1);
    expect(worker.logs("worker running")).toEqual([]);
    expect(worker.raw.filter((l) => l.includes("worker failed to start"))).toEqual([]);
  } finally {
    hole.close();
  }
}, 90_000);

// The producer's start is bounded by 3 × MQ_REQUEST_TIMEOUT_MS (up to 180 s), longer than either
// deadline once the timeout is raised: the shutdown must not wait for that start to end.
test.each([
  ["api.ts", "10000", "api listening"],
  ["worker.ts", "30000", "worker running"],
] as const)("%s with MQ_REQUEST_TIMEOUT_MS=%s: SIGTERM during the producer's start exits 0 without waiting for it", async (entry, timeoutMs, upLine) => {
  const hole = await blackHole();
  try {
    const env = {
      ...testEnv(),
      REDIS_PREFIX: `test:${randomBytes(4).toString("hex")}:`,
      MQ_ENDPOINT: `127.0.0.1:${hole.port}`,
      MQ_REQUEST_TIMEOUT_MS: timeoutMs,
      API_HOST: "127.0.0.1",
      API_PORT: String(freePort()),
    };
    const svc = new Service(entry, env);
    await waitFor(() => hole.accepted() > 0, 30_000, () => `${entry} to connect to RocketMQ\n${svc.raw.slice(-20).join("\n")}`);
    svc.signal("SIGTERM");
    // Before the fix: the producer's close waited for its start (30 s, 90 s) and the deadline forced exit 1.
    expect(await svc.exited).toBe(0);
    expect(svc.logs("shutdown deadline passed: forcing exit")).toEqual([]);
    expect(svc.logs("shutdown complete").length).toBe(1);
    expect(svc.logs("cleanup failed")).toEqual([]);
    expect(svc.logs(upLine)).toEqual([]);
  } finally {
    hole.close();
  }
}, 120_000);
