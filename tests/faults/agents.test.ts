// Agents that misbehave (issue 8, cases e and f): a task whose agent kills its worker process, and an
// agent that ignores its AbortSignal. No server is touched, so these run on the shared stack, each
// test in its own namespace, with the API and workers as child processes and the recording agent.
import { afterEach, expect, test } from "bun:test";
import { faultSystem, report, type FaultSystem } from "../support/fault-system.ts";
import { waitFor } from "../support/processes.ts";

let sys: FaultSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
}, 120_000);

test("e. a task whose agent kills its worker: failed with a reason after MAX_ATTEMPTS runs; other tasks are unaffected", async () => {
  const MAX_ATTEMPTS = 2;
  sys = await faultSystem({
    // Two deliveries more than MAX_ATTEMPTS allow: RocketMQ's own cap must not be what stops it.
    env: { MQ_RETRY_MAX_TIMES: "4", MQ_INVISIBLE_MS: "10000", MAX_ATTEMPTS: String(MAX_ATTEMPTS), AGENT_DELAY_MS: "100" },
    supervise: true,
  });
  await sys.startApi();
  await Promise.all([sys.startWorker(), sys.startWorker()]);
  const killer = await sys.submit("killer #kill");
  const others = await Promise.all(Array.from({ length: 40 }, (_, i) => sys!.submit(`other ${i}`)));
  await sys.settled(150_000);

  const v = (await sys.view(killer))!;
  const runs = sys.runs().get(killer) ?? [];
  expect(v.status, sys.logTail()).toBe("failed");
  expect(v.error ?? "").not.toBe("");
  // Each run killed its worker; it ran exactly MAX_ATTEMPTS times, not once per redelivery.
  expect(runs.map((r) => r.outcome)).toEqual(Array(MAX_ATTEMPTS).fill("killed"));
  for (const id of others) expect((await sys.view(id))?.status).toBe("done");
  expect(report(await sys.checkInvariants({ mayFail: (c) => c.includes("#kill") }))).toBe("");
}, 300_000);

test("f. an agent that ignores its AbortSignal: its slot is free at TASK_TIMEOUT_MS; the task is retried or failed by policy", async () => {
  const TASK_TIMEOUT_MS = 3_000;
  sys = await faultSystem({
    env: {
      MQ_RETRY_MAX_TIMES: "4",
      MQ_INVISIBLE_MS: "10000",
      MAX_ATTEMPTS: "2",
      RETRY_BASE_MS: "1000",
      TASK_TIMEOUT_MS: String(TASK_TIMEOUT_MS),
      TASK_ABORT_GRACE_MS: "1000", // how long the worker waits for the agent to honour its signal
      WORKER_CONCURRENCY: "1", // one slot: the next task can run only once the deaf agent's slot is free
      AGENT_DELAY_MS: "100",
    },
  });
  await sys.startApi();
  await sys.startWorker();
  const deaf = await sys.submit("deaf #hang=20000");
  await waitFor(() => (sys!.runs().get(deaf)?.length ?? 0) > 0, 60_000, "the deaf agent to start");
  const next = await sys.submit("next");
  await waitFor(() => (sys!.runs().get(next)?.length ?? 0) > 0, 60_000, () => `the next task to start\n${sys!.logTail()}`);
  const deafStart = sys.runs().get(deaf)![0]!.start;
  const nextStart = sys.runs().get(next)![0]!.start;
  // The slot is free at TASK_TIMEOUT_MS (plus the grace and room for a loaded box), not when the agent
  // gives up (20 s).
  expect(nextStart - deafStart).toBeLessThan(TASK_TIMEOUT_MS + 1_000 + 6_000);
  await sys.settled(150_000);
  expect((await sys.view(next))?.status).toBe("done");
  expect(["done", "failed"]).toContain((await sys.view(deaf))!.status);
  expect(report(await sys.checkInvariants({ mayFail: (c) => c.includes("#hang") }))).toBe("");
}, 300_000);
