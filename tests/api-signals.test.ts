// The API as users run it (`bun api.ts`), stopped by a signal before it is up: its start-up waits on
// Redis and RocketMQ (the producer's start alone, up to 3 × MQ_REQUEST_TIMEOUT_MS = 9 s when the
// endpoint hangs), and a SIGTERM meanwhile (a deploy, `docker compose stop`) must get the same clean
// shutdown as later: exit 0, never the default kill by the signal. The worker's equivalent is
// worker.test.ts › the process exits after SIGINT even when RocketMQ was never reachable.
import { afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { API_SHUTDOWN_DEADLINE_MS } from "../lib/shutdown.ts";
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
